#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs
# itself (Python venv, maturin, pytest, cbindgen, koffi), builds the emulator,
# and runs the Rust, C/C++, Node, Python, benchmark-smoke and short fuzzing
# suites (scripts/test-fuzz.sh: nightly + cargo-fuzz, installed if missing).
# The go and csharp stages (scripts/test-go.sh, scripts/test-csharp.sh: golang-go
# and mono-devel from Debian, installed if missing) test bindings/go and
# bindings/csharp, and the C log sink (scripts/test-logger.sh). The snippets
# stage (scripts/test-snippets.sh) runs every code block of every README as
# written against the emulator; it runs last, so that the python stage's wheel
# and the go stage's toolchain are there (alone, it builds what it needs).
# Usage: scripts/test.sh [rust|c|python|bench|fuzz|go|csharp|snippets ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(rust c python bench fuzz go csharp snippets)
passed=0
failed=0
for s in "${stages[@]}"; do
  script="scripts/test-$s.sh"
  if [ ! -x "$script" ]; then
    echo "== stage $s: $script missing, skipped"
    continue
  fi
  echo "== stage $s"
  if "$script"; then
    passed=$((passed + 1))
  else
    echo "== stage $s FAILED"
    failed=$((failed + 1))
  fi
done
echo "test stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
