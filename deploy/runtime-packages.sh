#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given binaries link directly (their
# ELF NEEDED entries), one per line, sorted: what the Dockerfile's runtime stage installs (apt adds
# their own dependencies), so that stage carries the libraries and nothing of the toolchain.
# Fails naming any library that no installed package holds.
# Usage: deploy/runtime-packages.sh BINARY...
set -euo pipefail
if [ $# -eq 0 ]; then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
needed=$(objdump -p "$@" | awk '$1 == "NEEDED" {print $2}' | sort -u)
cache=$(ldconfig -p)
for name in $needed; do
  path=$(awk -v n="$name" '$1 == n && $NF ~ /^\// {print $NF; exit}' <<<"$cache")
  if [ -z "$path" ]; then
    echo "runtime-packages: $name is not installed" >&2
    exit 1
  fi
  real=$(readlink -f "$path")
  # dpkg knows the path it installed; /lib is a link to /usr/lib on bookworm, so try both.
  found=""
  for candidate in "$path" "$real" "${path#/usr}" "${real#/usr}"; do
    if owner=$(dpkg -S "$candidate" 2>/dev/null); then
      found=${owner%%:*}
      break
    fi
  done
  if [ -z "$found" ]; then
    echo "runtime-packages: no package holds $name ($path)" >&2
    exit 1
  fi
  echo "$found"
done | sort -u
