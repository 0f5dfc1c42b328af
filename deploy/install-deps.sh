#!/usr/bin/env bash
# Installs every Debian bookworm package recur needs to build, test and run.
# Used by the README's commands, .ci/run and the Dockerfile: keep this the one list.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev nlohmann-json3-dev
  libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev
  libcpp-httplib-dev openssl clang-14 libclang-rt-14-dev
  fortunes-min fortunes gnuplot-nox
  prometheus  # promtool: the Prometheus rules' checks and unit tests (tests/deploy/)
  nginx  # the session-routing gRPC proxy (deploy/nginx/) and its test
  curl  # the HTTP API's tests: a real HTTP client, streaming line by line
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
