#!/usr/bin/env bash
# Rust: formatting, clippy (whole workspace), unit, integration and doc tests
# of the core and the emulator, and the CLI demo against the embedded emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test
# The README's first command must keep working.
out=$(cargo run -q --release --bin fal-realtime -- demo --frames 200)
echo "$out"
grep -q "^burst: 200/200 results" <<<"$out"
grep -q "^round trips: 200 sequential" <<<"$out"
