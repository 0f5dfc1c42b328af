#!/usr/bin/env bash
# The container and cluster files, checked offline by independent tools, as no Docker engine or
# cluster runs here:
# - the Dockerfile passes dockerfilelint (npm);
# - every manifest in deploy/kubernetes/ validates against the Kubernetes schemas
#   (npm kubernetes-models) and keeps the operator's rules (check_manifests.mjs);
# - the proxy's ConfigMap is deploy/nginx's template rendered for the StatefulSet's replicas, and a
#   rendered configuration passes `nginx -t`;
# - deploy/runtime-packages.sh, which the Dockerfile's runtime stage installs from, names an
#   installed package for each library the built binaries link.
# The npm tools come from deploy/install-test-tools.sh; without them this test fails, not skips.
# Usage: deploy_files_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
source_dir=$(cd "${1:?usage: deploy_files_test.sh SOURCE_DIR BUILD_DIR}" && pwd)
build_dir=$(cd "${2:?usage: deploy_files_test.sh SOURCE_DIR BUILD_DIR}" && pwd)
tools="$source_dir/tests/node_modules"
[ -d "$tools" ] || { echo "no $tools: run deploy/install-test-tools.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== dockerfilelint"
"$tools/.bin/dockerfilelint" "$source_dir/Dockerfile" "$source_dir/deploy/cuda.Dockerfile"

echo "== Kubernetes manifests"
node "$source_dir/tests/deploy/check_manifests.mjs" "$source_dir/deploy/kubernetes"

echo "== the proxy's ConfigMap is the rendered template"
render="$source_dir/deploy/nginx/render.sh"
RECUR_NGINX_FOREGROUND=1 bash "$render" 0.0.0.0:50051 /tmp \
  recur-server-0.recur-server:50051 recur-server-1.recur-server:50051 > "$work/expected.conf"
node -e '
  const yaml = require(process.argv[1] + "/js-yaml");
  const docs = yaml.loadAll(require("fs").readFileSync(process.argv[2], "utf8"));
  process.stdout.write(docs.find((d) => d && d.kind === "ConfigMap").data["nginx.conf"]);
' "$tools" "$source_dir/deploy/kubernetes/proxy.yaml" > "$work/configmap.conf"
diff -u "$work/expected.conf" "$work/configmap.conf"

echo "== nginx -t"
RECUR_NGINX_SINGLE_PROCESS=1 bash "$render" 127.0.0.1:50051 "$work" 127.0.0.1:50061 \
  127.0.0.1:50062 > "$work/nginx.conf"
nginx -t -p "$work" -c "$work/nginx.conf" -e "$work/error.log"

echo "== runtime packages"
packages=$(bash "$source_dir/deploy/runtime-packages.sh" "$build_dir/server/recur-server" \
  "$build_dir/client/recur" "$build_dir"/train/recur-{train,eval,generate,sweep})
echo "$packages" | tr '\n' ' '
echo
for needed in libtorch1.13 libgrpc++1.51 libprotobuf32; do
  grep -qx "$needed" <<<"$packages" || { echo "runtime-packages: $needed missing" >&2; exit 1; }
done
if grep -E -- '-dev$|^(g\+\+|gcc|cmake)' <<<"$packages"; then
  echo "runtime-packages: the runtime stage would carry build tools" >&2
  exit 1
fi
echo "deploy files: all checks passed"
