#!/usr/bin/env bash
# Installs the independent checkers the tests use and the product does not: npm packages pinned by
# tests/package-lock.json (dockerfilelint, kubernetes-models, js-yaml, openai), into
# tests/node_modules, with Debian's Node.js and npm where the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  echo "install-test-tools: installing Debian's nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
npm ci --prefix tests --no-audit --no-fund --loglevel=error
echo "install-test-tools: $(ls tests/node_modules | wc -l) npm packages in tests/node_modules"
