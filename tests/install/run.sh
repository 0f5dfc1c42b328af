#!/usr/bin/env bash
# Installs recur from the build directory $1 into a temporary prefix, then configures, builds and
# runs tests/install as a separate project that finds it with find_package(recur).
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
# Only the model library's headers and the proto file are installed, no internals.
test -f "$work/prefix/include/recur/model/transformer.h"
! test -e "$work/prefix/include/recur/server"
! test -e "$work/prefix/lib/librecur_train.a"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake -S "$here" -B "$work/consumer" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer" > "$work/build.log" || { cat "$work/build.log"; exit 1; }
"$work/consumer/consumer"
