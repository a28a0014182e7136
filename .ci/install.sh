#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages from
# .ci/apt-packages.txt and the npm packages of tests/e2e.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(grep -v '^#' .ci/apt-packages.txt | tr '\n' ' ')
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
fi
if [ -f tests/e2e/package.json ]; then
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error)
fi
for s in .ci/install.d/*.sh; do [ -e "$s" ] && bash "$s"; done
true
