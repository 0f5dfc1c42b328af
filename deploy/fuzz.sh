#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang-14, AddressSanitizer and UBSan into
# build-fuzz/, then runs each for SECONDS (default 30), its corpus kept in build-fuzz/corpus/.
# A crash, a sanitizer report or a hang stops the script with its input saved in
# build-fuzz/crashes/ (replay: build-fuzz/tests/fuzz/<name>_fuzzer <file>).
# Usage: deploy/fuzz.sh [seconds per target] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors checkpoint session_import request openai_request detokenizer)
build_dir=${RECUR_FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRECUR_FUZZ=ON
fi
cmake --build "$build_dir" -j "${RECUR_JOBS:-$(nproc)}" \
  --target $(printf '%s_fuzzer ' "${targets[@]}")
mkdir -p "$build_dir/crashes"
# LibTorch keeps allocations alive until exit; a leak check would report them, not our code.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
total=0
for target in "${targets[@]}"; do
  corpus="$build_dir/corpus/$target"
  mkdir -p "$corpus"
  log="$build_dir/$target.log"
  if ! "$build_dir/tests/fuzz/${target}_fuzzer" "$corpus" -max_total_time="$seconds" -timeout=20 \
      -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$build_dir/crashes/${target}-" > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target FAILED (input in $build_dir/crashes/)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  total=$((total + runs))
  echo "fuzz: $target: $runs executions in ${seconds} s, no crash"
done
echo "fuzz: ${#targets[@]} targets, $total executions, no crash"
