#!/usr/bin/env bash
# The test command: install the dependencies, build, run every test suite with CTest, then fuzz
# each parser for 30 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
bash deploy/install-test-tools.sh
start=$(date +%s)
bash deploy/build.sh
echo "build: $(( $(date +%s) - start )) s"
ctest --test-dir "${RECUR_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
# A short run of every libFuzzer target (clang, ASan, UBSan); docs/security.md records a long one.
bash deploy/fuzz.sh "${RECUR_FUZZ_SECONDS:-30}"
