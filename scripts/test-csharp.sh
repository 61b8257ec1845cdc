#!/usr/bin/env bash
# C# stage of scripts/test.sh: installs mono-devel from Debian if missing,
# builds the release library and the emulator, compiles bindings/csharp
# (FalRealtime.dll) and its test program with mcs, checks the binding's struct
# layouts against the C header, and runs the tests under `mono --debug`
# against two emulators (one with --session-timeout 1). The test program ends
# by returning from Main (no exit(3)): Mono must exit on its own once
# everything is disposed (the library's threads end then), within `timeout`.
# Prints a last line `csharp: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-cs.XXXXXX")"
source scripts/emulator.sh
cleanup() {
  stop_emulators
  rm -rf "$TMP"
}
trap cleanup EXIT
if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
  echo "installing mono-devel"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mono-devel gcc >/dev/null
fi
cargo build --release -p fal-realtime -p fal-realtime-emulator
LIBDIR="$ROOT/target/release"

mcs -warnaserror -target:library -out:"$TMP/FalRealtime.dll" bindings/csharp/FalRealtime.cs
mcs -warnaserror -r:"$TMP/FalRealtime.dll" -out:"$TMP/Tests.exe" bindings/csharp/tests/Tests.cs
cat >"$TMP/sizes.c" <<'C'
#include <stdio.h>
#include "fal_realtime.h"
int main(void) {
    printf("%zu,%zu,%zu\n", sizeof(fal_rt_client_options), sizeof(fal_rt_connect_options),
           sizeof(fal_rt_realtime_handler));
    return 0;
}
C
gcc -std=c11 -Iinclude "$TMP/sizes.c" -o "$TMP/sizes"
SIZES="$("$TMP/sizes")"

EMU="" EMU_TIMEOUT=""
start_emulator EMU plain && start_emulator EMU_TIMEOUT timeout --session-timeout 1 || true
if [ -z "$EMU" ] || [ -z "$EMU_TIMEOUT" ]; then
  echo "csharp: 0 passed, 1 failed"
  exit 1
fi
set +e
(cd "$TMP" && FAL_RT_STRUCT_SIZES="$SIZES" FAL_RT_EMULATOR="$EMU" FAL_RT_EMULATOR_TIMEOUT="$EMU_TIMEOUT" \
  LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 180 mono --debug Tests.exe) 2>&1 | tee "$TMP/cs.out"
rc=${PIPESTATUS[0]}
set -e
last="$(grep '^csharp: ' "$TMP/cs.out" | tail -1)"
if [ -z "$last" ]; then
  echo "csharp: 0 passed, 1 failed (the test program exited with $rc)"
  exit 1
fi
if [ "$rc" -eq 124 ]; then
  echo "csharp: the test program did not exit (Mono hung at shutdown)"
elif [ "$rc" -ne 0 ]; then
  echo "csharp: the test program exited with $rc"
fi
echo "$last"
[ "$rc" -eq 0 ]
