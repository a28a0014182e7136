#!/usr/bin/env bash
# The fuzz targets (crates/*/fuzz, one per parser of network input) still
# build: `cargo check` of each fuzz crate on stable (running them needs
# nightly and cargo-fuzz: `cargo +nightly fuzz run <target>` in the crate).
# One target dir for all of them, so libfuzzer-sys builds once.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${PLENARY_FUZZ_TARGET_DIR:-$PWD/target/fuzz-check}"
for dir in crates/*/fuzz; do
  echo "fuzz-check: $dir"
  (cd "$dir" && cargo check --quiet --bins)
done
