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

ensure_backend_env() {
  local v="$ROOT/.venv" req="$ROOT/backend/requirements.txt"
  _stamp_ok "$v" "$req" && return 0
  echo "[parallax] building backend environment in .venv (torch, diffusers, pycolmap...)" >&2
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  "$v/bin/python" -m pip install -q --upgrade pip >&2
  "$v/bin/python" -c "import torch" 2>/dev/null || "$v/bin/python" -m pip install -q "$TORCH_SPEC" >&2
  "$v/bin/python" -m pip install -q -r "$req" >&2
  cat "$req" "$ROOT/scripts/env.sh" | sha256sum > "$v/.requirements.sha"
}

ensure_blender_env() {
  local v="$ROOT/.venv-blender" req="$ROOT/requirements-blender.txt"
  _stamp_ok "$v" "$req" && return 0
  echo "[parallax] building Blender environment in .venv-blender (bpy 5.0.1)" >&2
  [ -x "$v/bin/python" ] || "$PY" -m venv "$v"
  "$v/bin/python" -m pip install -q --upgrade pip >&2
  "$v/bin/python" -m pip install -q -r "$req" >&2
  cat "$req" "$ROOT/scripts/env.sh" | sha256sum > "$v/.requirements.sha"
}
