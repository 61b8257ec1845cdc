#!/usr/bin/env bash
# Rust: formatting, clippy (whole workspace), unit, integration and doc tests
# of the core and the emulator, the CLI demo against the embedded emulator,
# the API docs (no rustdoc warnings) and the crate's package (its file list and
# a `cargo publish --dry-run`, which builds the packaged crate).
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

# API docs: no rustdoc warnings (broken intra-doc links etc.), and the
# library's page is target/doc/fal_realtime/index.html (the CLI binary of the
# same name is not documented: `doc = false` in emulator/Cargo.toml).
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps --workspace
grep -q "One fast, correct core for fal.ai realtime WebSocket endpoints" target/doc/fal_realtime/index.html \
  || { echo "rust: target/doc/fal_realtime/index.html is not the library's page" >&2; exit 1; }

# The crate: only its own files are packaged (the `include` list in
# Cargo.toml), and the packaged crate builds on its own (cargo verifies it).
files=$(cargo package -q -p fal-realtime --allow-dirty --list)
bad=$(grep -E '^(target|bindings|bench|fuzz|tests|scripts|emulator|\.ci)/' <<<"$files" || true)
if [ -n "$bad" ]; then
  echo "rust: files that are not the crate's in the package:" >&2
  echo "$bad" >&2
  exit 1
fi
for f in Cargo.toml build.rs src/lib.rs include/fal_realtime.h README.md LICENSE-MIT LICENSE-APACHE; do
  grep -qx "$f" <<<"$files" || { echo "rust: $f is not in the package" >&2; exit 1; }
done
echo "crate package: $(wc -l <<<"$files") files"
cargo publish -q --dry-run -p fal-realtime --allow-dirty
echo "rust: all checks passed"
