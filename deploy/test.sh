#!/usr/bin/env bash
# The test command: install the dependencies, build, run every test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
start=$(date +%s)
bash deploy/build.sh
echo "build: $(( $(date +%s) - start )) s"
ctest --test-dir "${RECUR_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
