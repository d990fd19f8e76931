#!/bin/bash
# One training leg on a GPU host (run from the repo root by the device tool, 10-minute calls):
# installs the carried wheels, trains on every visible GPU with accelerate for $MIN minutes,
# evaluates the EMA weights on the held-out split (rays and points cameras, in parallel) and
# puts the fp16 weights, log, loss curve and metrics under $OUT.
#   MIN=7 INIT=backend/weights/parallax-tiny RUN=run3 bash backend/train/gpu/train.sh [train flags]
# Needs .carry/gpu/whl (diffusers wheel: the host has torch, accelerate, transformers) and
# .carry/gpu/minilm (the text encoder, see backend/models/text.py) carried along.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PARALLAX_TEXT_ENCODER_DIR=$PWD/.carry/gpu/minilm PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 OMP_NUM_THREADS=4
NGPU=$(nvidia-smi -L | wc -l)
RUN=${RUN:-run}; MIN=${MIN:-7}; DIR=/tmp/runs/$RUN
nvidia-smi -L
INIT_FLAG=(); [ -n "${INIT:-}" ] && INIT_FLAG=(--init "$INIT")
RESUME_FLAG=(); [ -n "${RESUME:-}" ] && RESUME_FLAG=(--resume "$RESUME") && INIT_FLAG=()
mkdir -p /tmp/runs; t0=$(date +%s)
accelerate launch --num_machines 1 --num_processes $NGPU $([ $NGPU -gt 1 ] && echo --multi_gpu) \
  --main_process_port 29531 --mixed_precision bf16 --dynamo_backend no \
  -m backend train --config tiny --out $DIR --minutes $MIN "${INIT_FLAG[@]}" "${RESUME_FLAG[@]}" "$@" \
  > $DIR.log 2>&1
echo "train exit $? after $(( $(date +%s) - t0 )) s"; tail -3 $DIR.log
for cams in rays points; do
  g=$([ $cams = rays ] && echo 0 || echo $(( NGPU - 1 )))
  CUDA_VISIBLE_DEVICES=$g python3 -m backend.train.evaluate --model $DIR/model --clips ${EVAL_CLIPS:-24} \
    --cameras $cams --no-align > $DIR/eval_$cams.jsonl 2> $DIR/eval_$cams.err &
done
wait
cat $DIR/eval_*.jsonl; tail -2 $DIR/eval_*.err
mkdir -p /tmp/runs $OUT/model && cp $DIR/model/* $OUT/model/
cp $DIR.log $DIR/
tar czf $OUT/$RUN-logs.tgz -C /tmp/runs $RUN.log $RUN/log.jsonl $RUN/loss.png $RUN/args.json $(cd /tmp/runs && ls $RUN/eval_*)
ls -la $OUT $OUT/model
