#!/usr/bin/env bash
# Starts Plenary from a fresh clone with its embedded defaults: builds the
# browser's end-to-end encryption module into web/wasm/ the first time (adds
# the wasm32 target and wasm-bindgen-cli from crates.io if missing), then runs
# `plenary serve` with any flags given, e.g. `scripts/run.sh --listen 0.0.0.0:8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f web/wasm/plenary_e2ee_bg.wasm ] || bash .ci/install.d/20-wasm.sh
exec cargo run --release -p plenary-server --bin plenary -- serve "$@"
