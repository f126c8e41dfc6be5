#!/usr/bin/env bash
# make kind-e2e: a kind cluster, the operator's image loaded into it, the chart
# installed with its pods Ready, then the integration suite run against that
# cluster (LBOP_TEST_KUBECONFIG). Needs Docker and kind; exits 77 ("skipped")
# with the reason when either is missing. KEEP_CLUSTER=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

for tool in docker kind; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "kind-e2e SKIPPED: $tool is not installed (this test needs Docker and kind)" >&2
    exit 77
  fi
done
docker info >/dev/null 2>&1 || { echo "kind-e2e SKIPPED: the Docker daemon is not reachable" >&2; exit 77; }

cluster=${KIND_CLUSTER:-lbop-e2e}
workdir=$(mktemp -d)
created=""
cleanup() {
  # Only a cluster this run created, and only unless asked to keep it.
  if [ -n "$created" ] && [ "${KEEP_CLUSTER:-}" != 1 ]; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

kubeconfig=$workdir/kubeconfig
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image=lb-operator:$version
helm=$(tools/helm/build.sh)
kubectl=${LBOP_KUBECTL:-$(tools/controlplane/build.sh)/kubectl}

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
  created=1
fi
kind get kubeconfig --name "$cluster" >"$kubeconfig"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }
k create namespace lb-system --dry-run=client -o yaml | k apply -f -
k create namespace lbop-e2e-smoke --dry-run=client -o yaml | k apply -f -
k -n lb-system create secret generic cloudscale-credentials --from-literal=token=not-a-real-token \
  --dry-run=client -o yaml | k apply -f -
# The release watches a namespace of its own, so it never touches the suite's objects.
"$helm" --kubeconfig "$kubeconfig" upgrade --install lb-operator charts/lb-operator -n lb-system \
  --set image.repository=lb-operator --set image.tag="$version" --set image.pullPolicy=Never \
  --set 'watchNamespaces={lbop-e2e-smoke}' --wait --timeout 5m
k -n lb-system get pods -l app.kubernetes.io/instance=lb-operator
k -n lb-system exec deploy/lb-operator -- lb-operator shards -n lb-system --watch-namespaces lbop-e2e-smoke

LBOP_TEST_KUBECONFIG=$kubeconfig LBOP_KUBECTL=$kubectl .venv/bin/pytest tests/integration
