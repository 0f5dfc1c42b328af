#!/usr/bin/env bash
# The main job on its embedded default: install, build, train a small byte-level linear-attention
# model for about two minutes on the fortune(6) corpus that Debian ships (or --data FILE|DIR),
# then generate text from the checkpoint.
# Usage: deploy/demo.sh [--data PATH] [--time_budget SECONDS] [--prompt TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."

data=/usr/share/games/fortunes
budget=120
prompt="The "
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data=$2; shift 2 ;;
    --time_budget) budget=$2; shift 2 ;;
    --prompt) prompt=$2; shift 2 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bash deploy/install-deps.sh
bash deploy/build.sh
bin=${RECUR_BUILD_DIR:-build}

echo "== training for ${budget} s on ${data}"
"$bin/train/recur-train" --dataset text --data "$data" --out runs/demo \
  --layers 2 --heads 4 --d_model 192 --d_ff 768 --dropout 0 \
  --seq_len 128 --batch_size 16 --lr 2e-3 --warmup 50 --time_budget "$budget" \
  --metrics_log runs/demo-metrics.jsonl

echo "== generating from runs/demo"
"$bin/train/recur-generate" --checkpoint runs/demo --prompt "$prompt" --max_tokens 300 \
  --temperature 0.7 --seed 1

echo
echo "== serving runs/demo: recur-server, with the recur CLI streaming from it"
port=${RECUR_DEMO_PORT:-50551}
"$bin/server/recur-server" --checkpoint runs/demo --port "$port" --metrics_port -1 2> runs/demo-server.log &
server=$!
trap 'kill "$server" 2> /dev/null || true' EXIT
recur=("$bin/client/recur" --server "127.0.0.1:$port")
for _ in $(seq 100); do "${recur[@]}" --timeout 1s health > /dev/null 2>&1 && break; sleep 0.1; done
session=$("${recur[@]}" session create)
"${recur[@]}" generate "$prompt" --session "$session" --max_tokens 150 --temperature 0.7 --seed 1 --usage
"${recur[@]}" generate " Then" --session "$session" --max_tokens 150 --temperature 0.7 --seed 2 --usage
"${recur[@]}" session info "$session"
kill -TERM "$server"
wait "$server"
