#!/usr/bin/env bash
# Builds the libFuzzer targets on stable Rust: sanitizer-coverage
# instrumentation (the flags cargo-fuzz passes with `-s none`), no sanitizer,
# debug assertions and overflow checks on. Binaries land in
# target/x86_64-unknown-linux-gnu/release/<target>. Usage: ./build.sh [--bin NAME]
set -e
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
exec cargo build --release --target x86_64-unknown-linux-gnu "${@:---bins}"
