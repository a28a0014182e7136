#!/usr/bin/env bash
# Starts Plenary from a fresh clone with its embedded defaults: builds the
# browser's end-to-end encryption module into web/wasm/ the first time, and
# again whenever its sources (crates/plenary-wasm, crates/plenary-e2ee,
# Cargo.lock) are newer than it, e.g. after a `git pull` (adds the wasm32
# target and wasm-bindgen-cli from crates.io if missing); then runs
# `plenary serve` with any flags given, e.g. `scripts/run.sh --listen 0.0.0.0:8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
wasm=web/wasm/plenary_e2ee_bg.wasm
if [ ! -f "$wasm" ] \
  || [ -n "$(find crates/plenary-wasm crates/plenary-e2ee Cargo.lock Cargo.toml -newer "$wasm" -print -quit)" ]; then
  bash .ci/install.d/20-wasm.sh
fi
exec cargo run --release -p plenary-server --bin plenary -- serve "$@"
