#!/usr/bin/env bash
# Builds the toxiproxy server from the Go module pinned in go.mod/go.sum and prints
# the path of the binary (the last line of stdout; progress goes to stderr).
#
# The chaos tests put it between one operator replica and the API server to
# black-hole that replica's connections (half-open: packets dropped, sockets
# left open), which no signal or process kill can do.
#
# - If LBOP_TOXIPROXY names an executable, that is printed and nothing is built.
# - Otherwise the binary is cached under
#   ${XDG_CACHE_HOME:-~/.cache}/lb-operator/toxiproxy/<version>/toxiproxy-server,
#   so a second run builds nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ -n "${LBOP_TOXIPROXY:-}" ]; then
  if [ -x "$LBOP_TOXIPROXY" ]; then
    echo "$LBOP_TOXIPROXY"
    exit 0
  fi
  echo "LBOP_TOXIPROXY=$LBOP_TOXIPROXY is not an executable; building toxiproxy instead" >&2
fi

version=$(awk '{ sub(/^require /, "") } $1 == "github.com/Shopify/toxiproxy/v2" { print $2 }' "$here/go.mod")
[ -n "$version" ] || { echo "tools/toxiproxy/go.mod does not pin github.com/Shopify/toxiproxy/v2" >&2; exit 1; }
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lb-operator/toxiproxy
target=$cache_root/$version/toxiproxy-server
if [ -x "$target" ]; then
  echo "$target"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "go is not installed: install Go >= 1.26, or set LBOP_TOXIPROXY to a toxiproxy-server binary" >&2
  exit 1
fi

# Build into a private folder, then rename: an interrupted build never leaves
# a half-written binary that a later run would trust.
mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
export GOSUMDB=off # go.sum pins every hash; the checksum database is not reachable everywhere

echo "building toxiproxy $version (about a minute on a cold cache)" >&2
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$staging/toxiproxy-server" \
  github.com/Shopify/toxiproxy/v2/cmd/server)

mkdir -p "$(dirname "$target")"
mv "$staging/toxiproxy-server" "$target"
echo "$target"
