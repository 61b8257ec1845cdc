#!/usr/bin/env bash
# Go stage of scripts/test.sh: installs Go from Debian if missing, builds the
# release library and the emulator, runs the C log-sink test
# (scripts/test-logger.sh), then `go test -race` of bindings/go against two
# emulators (one with --session-timeout 1 for the server's idle timeout).
# Prints a last line `go: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-go.XXXXXX")"
source scripts/emulator.sh
cleanup() {
  stop_emulators
  rm -rf "$TMP"
}
trap cleanup EXIT
if ! command -v go >/dev/null 2>&1; then
  echo "installing golang-go"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go gcc >/dev/null
fi
cargo build --release -p fal-realtime -p fal-realtime-emulator
passed=0
failed=0
if FAL_RT_SKIP_BUILD=1 scripts/test-logger.sh; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

EMU="" EMU_TIMEOUT=""
start_emulator EMU plain && start_emulator EMU_TIMEOUT timeout --session-timeout 1 || true
if [ -z "$EMU" ] || [ -z "$EMU_TIMEOUT" ]; then
  echo "go: $passed passed, $((failed + 1)) failed"
  exit 1
fi
export GOFLAGS="${GOFLAGS:--mod=mod}" GOTOOLCHAIN=local
export GOCACHE="${GOCACHE:-$ROOT/target/go-cache}"
set +e
(cd bindings/go && FAL_RT_EMULATOR="$EMU" FAL_RT_EMULATOR_TIMEOUT="$EMU_TIMEOUT" \
  timeout 600 go test -race -count=1 -v ./...) 2>&1 | tee "$TMP/go.out"
rc=${PIPESTATUS[0]}
set -e
gp=$(grep -c -- '^--- PASS' "$TMP/go.out" || true)
gf=$(grep -c -- '^--- FAIL' "$TMP/go.out" || true)
passed=$((passed + gp))
failed=$((failed + gf))
if [ "$rc" -ne 0 ] && [ "$gf" -eq 0 ]; then failed=$((failed + 1)); fi
echo "go: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
