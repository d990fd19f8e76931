#!/bin/bash
# Every GPU benchmark of the project in one device call (run from the repo root; figures -> $OUT).
# Needs .carry/gpu (diffusers wheel, text encoder) carried; see backend/train/gpu/train.sh.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/gpu/whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PARALLAX_TEXT_ENCODER_DIR=$PWD/.carry/gpu/minilm PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
# ONLY="model v2c" runs just those.
run() { local name=$1; shift; [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]] && return; echo "== $name: $*"; timeout ${LIMIT:-150} "$@" > $OUT/$name.txt 2>&1; echo "exit $?"; tail -${TAIL:-12} $OUT/$name.txt; }
run synth python3 benchmarks/synth_bench.py --device cuda
run ga python3 benchmarks/ga_bench.py --device cuda --ops
run model python3 benchmarks/model_bench.py --clips 16 --device cuda
run eval_align python3 -m backend.train.evaluate --clips 24 --cameras points
run eval_pnp python3 -m backend.train.evaluate --clips 24 --cameras points --no-align
run eval_nophoto python3 -m backend.train.evaluate --clips 24 --cameras points --no-photometric
# Stage split of V2C, and JOG3R's generation figures (the T2V+C vs T2V->V2C table, the contact sheet)
run v2c python3 benchmarks/v2c_bench.py --clips 8 --device cuda
LIMIT=300 run t2vc python3 -m backend eval t2vc --videos 32 --device cuda --json $OUT/eval_t2vc.json --markdown $OUT/eval_gpu.md
run sheet python3 -m backend eval contact-sheet --prompts 8 --out $OUT/t2v_contact_sheet.png --device cuda
