#!/usr/bin/env bash
# Makes (or finds cached) the virtualenv of Octavia's and Keystone's API servers, pinned by
# requirements.txt, and prints the path of its Python (the last line of stdout;
# progress goes to stderr). tools/octavia/serve.py runs with that Python.
#
# Octavia's dependency tree (oslo.*, pecan, SQLAlchemy, taskflow, eventlet, …)
# must not pin the operator's packages, so it lives apart from .venv, cached under
# ${XDG_CACHE_HOME:-~/.cache}/lb-operator/octavia/<hash of requirements.txt>/;
# a second run installs nothing. About a minute and a half on a cold cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
digest=$( (cat "$here/requirements.txt"; "$python" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lb-operator/octavia
target=$cache_root/$digest
if [ -x "$target/bin/python" ] && [ -f "$target/.installed" ]; then
  echo "$target/bin/python"
  exit 0
fi

# Install into a private folder, then rename: an interrupted install never leaves
# a half-made virtualenv that a later run would trust.
mkdir -p "$cache_root"
staging=$cache_root/.build.$$
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
echo "installing Octavia's API server into its own virtualenv (about a minute and a half on a cold cache)" >&2
"$python" -m venv "$staging"
"$staging/bin/pip" install --quiet --upgrade pip >&2
"$staging/bin/pip" install --quiet -r "$here/requirements.txt" >&2
touch "$staging/.installed"
rm -rf "$target"
mv "$staging" "$target"
echo "$target/bin/python"
