#!/usr/bin/env bash
# WebAssembly build of plenary-e2ee: the wasm32 target, wasm-bindgen-cli pinned
# to the wasm-bindgen version in Cargo.lock (from crates.io; wasm-pack is not
# used, it downloads binaries), then web/wasm/ via scripts/build-wasm.sh, which
# must exist before the server (which embeds web/) is built.
set -euo pipefail
cd "$(dirname "$0")/../.."
rustup target list --installed | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$want" != "$have" ]; then
  cargo install wasm-bindgen-cli --version "$want"
fi
bash scripts/build-wasm.sh
