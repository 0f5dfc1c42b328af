#!/usr/bin/env bash
# n samples of one long prompt through the HTTP API: one request with "n": N (the prompt fed once,
# its state forked) against N separate concurrent requests (each feeding the prompt), at the
# reference shape with a byte vocabulary (D 256, 4 layers, 4 heads, d_ff 1,024), a PROMPT-token
# prompt and 32 tokens per sample. Prints the wall times of REPEATS rounds of each, alternating.
# Usage: bench/samples_bench.sh [BUILD_DIR] [N] [PROMPT_TOKENS] [REPEATS]
set -euo pipefail
build=${1:-build}
n=${2:-4}
prompt_tokens=${3:-2048}
repeats=${4:-5}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
head -c 200000 /dev/urandom | base64 > "$work/text.txt"
"$build/train/recur-train" --dataset text --data "$work/text.txt" --max_steps 1 --out "$work/model" \
  --d_model 256 --layers 4 --heads 4 --d_ff 1024 --seq_len 64 --batch_size 2 --evaluate=false \
  > "$work/train.log" 2>&1
port=$((20000 + RANDOM % 20000))
"$build/server/recur-server" --checkpoint "$work/model" --port 0 --metrics_port -1 \
  --http_port "$port" --max_prompt_tokens 65536 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do curl -s "localhost:$port/health" > /dev/null && break; sleep 0.1; done
prompt=$(head -c "$prompt_tokens" /dev/zero | tr '\0' 'a')
body() { printf '{"prompt": "%s", "max_tokens": 32, "temperature": 1, "seed": %d, "n": %d}' \
  "$prompt" "$1" "$2"; }
ms() { date +%s%3N; }
echo "n $n, prompt $prompt_tokens tokens, 32 tokens per sample"
for round in $(seq "$repeats"); do
  start=$(ms)
  curl -s "localhost:$port/v1/completions" -d "$(body 1 "$n")" > /dev/null
  forked=$(( $(ms) - start ))
  start=$(ms)
  for i in $(seq "$n"); do
    curl -s "localhost:$port/v1/completions" -d "$(body "$i" 1)" > /dev/null &
  done
  wait $(jobs -p | grep -v "^$server$") 2>/dev/null || true
  separate=$(( $(ms) - start ))
  echo "round $round: n=$n in one request ${forked} ms, $n separate requests ${separate} ms"
done
