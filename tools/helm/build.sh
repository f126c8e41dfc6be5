#!/usr/bin/env bash
# Builds the Helm CLI from the Go module pinned in go.mod/go.sum and prints the
# path of the binary (the last line of stdout; progress goes to stderr).
#
# - If LBOP_HELM names an executable, that is printed and nothing is built.
# - Otherwise the binary is cached under
#   ${XDG_CACHE_HOME:-~/.cache}/lb-operator/helm/<version>/helm, so a second
#   run builds nothing. Go's module and build caches are kept as usual.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -n "${LBOP_HELM:-}" ]; then
  if [ -x "$LBOP_HELM" ]; then
    echo "$LBOP_HELM"
    exit 0
  fi
  echo "LBOP_HELM=$LBOP_HELM is not an executable; building Helm instead" >&2
fi

version=$(awk '$1 == "helm.sh/helm/v3" { print $2 }' "$here/go.mod")
[ -n "$version" ] || { echo "tools/helm/go.mod does not pin helm.sh/helm/v3" >&2; exit 1; }
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lb-operator/helm
target=$cache_root/$version-2/helm  # -2: built with the Kubernetes version set
if [ -x "$target" ]; then
  echo "$target"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "go is not installed: install Go >= 1.26, or set LBOP_HELM to a helm binary" >&2
  exit 1
fi

# Build into a private folder, then rename: an interrupted build never leaves
# a half-written binary that a later run would trust.
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
export GOSUMDB=off # go.sum pins every hash; the checksum database is not reachable everywhere

echo "building helm $version (a few minutes on a cold cache)" >&2
# The Kubernetes version Helm assumes offline (`helm template`, `helm lint`), from its client-go pin,
# as Helm's own Makefile sets it; unset, it would be v1.20 and refuse the chart's kubeVersion.
k8s=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$here/go.mod")
k8s_minor=${k8s#v0.}; k8s_minor=${k8s_minor%%.*}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
(cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$staging/helm" helm.sh/helm/v3/cmd/helm)

mkdir -p "$(dirname "$target")"
mv "$staging/helm" "$target"
echo "$target"
