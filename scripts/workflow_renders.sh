#!/usr/bin/env bash
# Re-take the README's generate-workflow images (docs/img/generate_*.png): headless Blender runs
# the add-on's Generate Shot against a real local backend, imports the result and renders it.
# Extra arguments go to scripts/workflow_renders.py (e.g. --frames 8 --steps 10 --device cuda).
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_backend_env
ensure_blender_env
cd "$ROOT"
# On a small shared CPU one OpenMP thread per process is much faster (measured 10x on 2 cores).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv-blender/bin/python scripts/workflow_renders.py "$@"
