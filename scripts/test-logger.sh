#!/usr/bin/env bash
# The C log sink test (tests/c/test_logger.c: fal_rt_set_logger) against the
# emulator, plain and (if valgrind is installed) under valgrind. Run by
# scripts/test-go.sh, or alone.
# Prints a last line `logger: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-log.XXXXXX")"
source scripts/emulator.sh
cleanup() {
  stop_emulators
  rm -rf "$TMP"
}
trap cleanup EXIT
[ -n "${FAL_RT_SKIP_BUILD:-}" ] || cargo build --release -p fal-realtime -p fal-realtime-emulator
LIBDIR="$ROOT/target/release"
gcc -std=c11 -Wall -Wextra -Werror -Iinclude -Itests/c tests/c/test_logger.c \
  -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" -lfal_realtime -lpthread -o "$TMP/test_logger"
start_emulator HOSTPORT plain || { echo "logger: 0 passed, 1 failed"; exit 1; }
set +e
FAL_RT_EMULATOR="$HOSTPORT" timeout 120 "$TMP/test_logger" | tee "$TMP/out"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 0 ] && command -v valgrind >/dev/null 2>&1; then
  set +e
  FAL_RT_EMULATOR="$HOSTPORT" timeout 300 valgrind -q --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --suppressions="$ROOT/tests/c/valgrind.supp" "$TMP/test_logger" >"$TMP/vg.out" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then echo "ok - logger tests under valgrind"; else cat "$TMP/vg.out"; echo "3 passed, 1 failed" >>"$TMP/out"; fi
fi
counts="$(tail -1 "$TMP/out")"
echo "logger: ${counts:-0 passed, 1 failed}"
[ "$rc" -eq 0 ]
