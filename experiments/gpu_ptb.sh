#!/usr/bin/env bash
# PTB on a lent GPU, as one prepared call: a larger linear-attention model (the issue's GPU target is
# test perplexity <= 82.7) trained for a time budget, then evaluated three ways by recur-eval.
#
# Here, once (the device machine sees only the working tree and what is carried):
#   bash ../shared/device/prepare && mkdir -p .device-data && cp -r ../shared/datasets/ptb .device-data/
# On the device (run, carry [".device", ".device-data"]):
#   bash .device/gpu-build && . /opt/recur-deps/env.sh && bash experiments/gpu_ptb.sh .device-data/ptb 300
# The log, the metrics and the evaluation go to $OUT (or runs/gpu-ptb); the checkpoint stays on the
# machine, under runs/gpu-ptb.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: experiments/gpu_ptb.sh DATA_DIR [SECONDS]}
budget=${2:-300}
build=${RECUR_GPU_BUILD_DIR:-build-gpu}
out=${OUT:-runs/gpu-ptb}
model=runs/gpu-ptb/model
[ -x "$build/train/recur-train" ] || { echo "gpu_ptb.sh: no $build/train/recur-train (run .device/gpu-build first)" >&2; exit 1; }
[ -f "$data/ptb.train.txt" ] || { echo "gpu_ptb.sh: no ptb.train.txt in $data" >&2; exit 1; }
mkdir -p "$out" "$(dirname "$model")"
rm -rf "$model" "$model.state" "$model.metrics.jsonl"

# The sixth CPU run's recipe with its decay learned (docs/experiments.md, "A learned decay") at
# 6 x 512 with 8 heads, 8 times the batch.
"$build/train/recur-train" --dataset ptb --data_dir "$data" --device cuda \
  --layers 6 --heads 8 --d_model 512 --d_ff 2048 --dropout 0.4 --seq_len 256 --batch_size 32 \
  --lr 1e-3 --warmup 400 --weight_decay 0.1 --short_conv 4 --positional_encoding none \
  --state_decay learned --ema_decay 0.999 --epochs 1000 --time_budget "$budget" --eval_every 200 \
  --seed 1 --out "$model" --metrics_log "$out/metrics.jsonl" 2>&1 | tee "$out/train.log"

"$build/train/recur-eval" --checkpoint "$model" --dataset ptb --data_dir "$data" --device cuda \
  --seq_len 256 --batch_size 4 2>&1 | tee "$out/eval.txt"
