#!/usr/bin/env bash
# The Prometheus configuration and rules in deploy/prometheus/, checked by Prometheus's own tool:
# the configuration and rule files parse, and the rules' unit tests (rules_test.yml) pass.
# promtool comes with Debian's `prometheus` package (deploy/install-deps.sh); without it this
# test fails rather than skips.
set -euo pipefail
dir="${1:?usage: prometheus_rules_test.sh DEPLOY_PROMETHEUS_DIR}"
command -v promtool > /dev/null || { echo "promtool not found: run deploy/install-deps.sh" >&2; exit 1; }
cd "$dir"
promtool check config prometheus.yml
promtool check rules rules.yml
promtool test rules rules_test.yml
