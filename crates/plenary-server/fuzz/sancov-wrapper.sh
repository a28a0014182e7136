#!/bin/sh
# rustc wrapper: coverage instrumentation for libFuzzer (as cargo-fuzz adds
# it) only for plenary crates and the fuzz targets, so that already-built
# dependencies are reused.
# (No -Cdebug-assertions: rust-embed's derive would then expect the
# debug build of its library, which the reused dependencies are not.)
rustc="$1"; shift
case " $* " in
  *" --crate-name plenary"*|*" --crate-name ws_frames "*|*" --crate-name ice_tcp "*|*" --crate-name ds_messages "*|*" --crate-name ws_handshake "*|*" --crate-name datagram "*)
    exec "$rustc" "$@" -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Coverflow-checks ;;
  *) exec "$rustc" "$@" ;;
esac
