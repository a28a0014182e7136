#!/usr/bin/env bash
# Builds crates/plenary-wasm for the browser into web/wasm/ (ES module,
# wasm-bindgen --target web): plenary_e2ee.js + plenary_e2ee_bg.wasm.
# The server embeds web/ at compile time, so run this before building it.
# Needs: rustup target wasm32-unknown-unknown, and wasm-bindgen-cli at exactly
# the wasm-bindgen version in Cargo.lock (.ci/install.d/20-wasm.sh installs both).
# Fails if the gzipped .wasm exceeds the budget (1 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUDGET=${PLENARY_WASM_BUDGET:-1048576}
OUT="${PLENARY_WASM_OUT:-$ROOT/web/wasm}"
# Own target dir: size-optimised profile settings must not invalidate the
# native release build.
export CARGO_TARGET_DIR="${PLENARY_WASM_TARGET_DIR:-$ROOT/target-wasm}"
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${PLENARY_WASM_OPT_LEVEL:-3}
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_PANIC=abort

want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$want" != "$have" ]; then
  echo "build-wasm: need wasm-bindgen-cli $want, found '${have:-none}'" >&2
  echo "  cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi

cargo build -p plenary-wasm --target wasm32-unknown-unknown --release
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" --out-name plenary_e2ee \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/plenary_wasm.wasm"
if command -v wasm-opt >/dev/null 2>&1; then
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals "$OUT/plenary_e2ee_bg.wasm" -o "$OUT/plenary_e2ee_bg.wasm.opt" \
    && mv "$OUT/plenary_e2ee_bg.wasm.opt" "$OUT/plenary_e2ee_bg.wasm" \
    || { rm -f "$OUT/plenary_e2ee_bg.wasm.opt"; echo "build-wasm: wasm-opt failed, keeping the unoptimised module"; }
fi
raw=$(stat -c %s "$OUT/plenary_e2ee_bg.wasm")
gz=$(gzip -9 -c "$OUT/plenary_e2ee_bg.wasm" | wc -c)
echo "build-wasm: web/wasm/plenary_e2ee_bg.wasm $raw bytes, $gz bytes gzipped (budget $BUDGET)"
if [ "$gz" -gt "$BUDGET" ]; then
  echo "build-wasm: gzipped wasm over budget" >&2
  exit 1
fi
