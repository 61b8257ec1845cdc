#!/usr/bin/env bash
# Rust: formatting, clippy, unit and integration tests (core + emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --exclude fal-realtime-python --all-targets -- -D warnings 2>/dev/null || \
  cargo clippy --all-targets -- -D warnings
cargo test --all-targets
