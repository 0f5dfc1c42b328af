#!/usr/bin/env bash
# Renders recur.conf.template into an nginx.conf.
# Usage: render.sh LISTEN PREFIX REPLICA... > nginx.conf
#   LISTEN   address nginx listens on for gRPC, e.g. 0.0.0.0:50051
#   PREFIX   a writable directory for nginx's pid, log and temporary files
#   REPLICA  host:port of each recur-server, e.g. recur-0.recur:50051 (the order does not matter)
# RECUR_NGINX_FOREGROUND=1 adds `daemon off;` (containers); RECUR_NGINX_SINGLE_PROCESS=1 also
# `master_process off;` (tests, where nginx runs as an ordinary user).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
listen=$1 prefix=$2
shift 2
replicas=""
for r in "$@"; do replicas+="    server ${r} max_fails=1 fail_timeout=5s;\n"; done
mode=""
if [ "${RECUR_NGINX_FOREGROUND:-0}" = 1 ]; then mode="daemon off;"; fi
if [ "${RECUR_NGINX_SINGLE_PROCESS:-0}" = 1 ]; then mode="daemon off;\nmaster_process off;"; fi
sed -e "s|@LISTEN@|${listen}|" -e "s|@PREFIX@|${prefix}|g" -e "s|@REPLICAS@|${replicas}|" \
  -e "s|@PROCESS_MODE@|${mode}|" "$(dirname "$0")/recur.conf.template"
