#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the pinned Go modules and prints
# the folder that holds them (the last line of stdout; progress goes to stderr).
#
# - If KUBEBUILDER_ASSETS names a folder holding all three, that folder is
#   printed and nothing is built (the envtest convention: no Go needed).
# - Otherwise the binaries are cached under
#   ${XDG_CACHE_HOME:-~/.cache}/lb-operator/controlplane/<versions>/, so a
#   second run builds nothing. Go's module and build caches are kept as usual.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

binaries=(kube-apiserver kube-controller-manager kubectl etcd)

has_all() {
  local dir=$1 name
  for name in "${binaries[@]}"; do
    [ -x "$dir/$name" ] || return 1
  done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if has_all "$KUBEBUILDER_ASSETS"; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${binaries[*]}; building them instead" >&2
fi

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lb-operator/controlplane
target=$cache_root/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION
if has_all "$target"; then
  echo "$target"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "go is not installed: install Go >= 1.26, or set KUBEBUILDER_ASSETS to a folder with ${binaries[*]}" >&2
  exit 1
fi

# Build in a private folder, then rename: an interrupted build never leaves a
# half-filled cache entry that a later run would trust.
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# The committed go.sum pins every module's hash; the checksum database is not
# reachable from every build machine, so it is off for these tool builds only.
export GOSUMDB=off

major=${KUBERNETES_VERSION#v}; major=${major%%.*}
minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

# One build for the three: the packages they share are compiled once.
echo "building kube-apiserver, kube-controller-manager and kubectl $KUBERNETES_VERSION (several minutes on a cold cache)" >&2
(cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$staging/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl)

echo "building etcd $ETCD_VERSION" >&2
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
(cd "$here/etcd" && go build -trimpath -ldflags "$etcd_ldflags" -o "$staging/etcd" .)

rm -rf "$target"
mv "$staging" "$target"
trap - EXIT
echo "$target"
