#!/usr/bin/env bash
# Browser end-to-end tests (tests/e2e): the release `plenary` binary, headless
# Debian Chromium driven by playwright-core, real test media from
# scripts/test-media.sh, plus the native client. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The page loads plenary-wasm from web/wasm/ (.ci/install.d/20-wasm.sh builds
# it before the server, which embeds web/).
if [ ! -f web/wasm/plenary_e2ee_bg.wasm ]; then
  bash scripts/build-wasm.sh
  cargo build --release -p plenary-server
fi
[ -x target/release/plenary ] || cargo build --release -p plenary-server
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error)
fi
cd tests/e2e
# One test file at a time: the machine has two cores.
node --test --test-concurrency=1
