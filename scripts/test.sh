#!/usr/bin/env bash
# Run every test: the backend's in .venv, the add-on's in real Blender (.venv-blender).
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_backend_env
ensure_blender_env
cd "$ROOT"
status=0
echo "== backend tests (.venv)"
.venv/bin/python -m pytest -c tests/pytest.ini tests/backend_tests -q "$@" || status=$?
echo "== Blender tests (.venv-blender, bpy $(.venv-blender/bin/python -c 'import bpy; print(bpy.app.version_string)' 2>/dev/null))"
.venv-blender/bin/python -m pytest -c tests/pytest.ini tests/blender -q "$@" || status=$?
exit $status
