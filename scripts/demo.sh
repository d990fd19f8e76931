#!/usr/bin/env bash
# The main job, end to end on this machine (CPU is enough):
#   1. the backend renders a held-out synthetic clip with known cameras (a result bundle),
#   2. Blender (headless) imports it with the add-on: plate, animated camera, per-frame points,
#   3. saves demo_out/parallax_demo.blend and demo_out/parallax_demo.png (points over the plate).
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_backend_env
ensure_blender_env
cd "$ROOT"
mkdir -p demo_out
rm -rf demo_out/synth
.venv/bin/python -m backend synth --split heldout --count 1 --seed 7 --frames 24 \
  --width 320 --height 240 --out demo_out/synth
bundle="$(dirname "$(find demo_out/synth -name bundle.json | sort | head -n 1)")"
.venv-blender/bin/python scripts/demo_blender.py "$bundle" demo_out
