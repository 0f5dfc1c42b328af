#!/usr/bin/env bash
# Configures and builds recur into build/ (Release, Ninja when present, ccache when present).
# Usage: deploy/build.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${RECUR_BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" "$@"
fi
jobs=${RECUR_JOBS:-$(nproc)}
cmake --build "$build_dir" -j "$jobs"
