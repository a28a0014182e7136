#!/usr/bin/env bash
# plenary-e2ee across builds: frames encrypted by the native build decrypt in
# the wasm build (in Node) and the other way round, plus MLS in wasm.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f web/wasm/plenary_e2ee_bg.wasm ] || bash scripts/build-wasm.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run -q --release -p plenary-e2ee --example cross_fixture write > "$tmp/native.json"
PLENARY_CROSS_FIXTURE="$tmp/native.json" PLENARY_CROSS_OUT="$tmp/wasm.json" \
  node --test crates/plenary-wasm/tests/node/
cargo run -q --release -p plenary-e2ee --example cross_fixture verify "$tmp/wasm.json"
