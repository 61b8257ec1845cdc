#!/usr/bin/env bash
# C / C++ / Node stage of scripts/test.sh:
#   header drift check (pinned cbindgen), release library + emulator build,
#   C and C++ demos (-Wall -Wextra -Werror, output asserted), the C ABI tests
#   plain, under AddressSanitizer/UBSan and under valgrind, a pkg-config build
#   (shared and static), and the Node.js koffi example.
# Installs what it needs itself (cbindgen, apt packages if missing, koffi via npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-c.XXXXXX")"
EMU_PID=""
cleanup() {
  if [ -n "$EMU_PID" ]; then kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + ${2:-1})); echo "ok - $1"; }
bad() { failed=$((failed + ${2:-1})); echo "FAILED - $1"; }

# ---- tools ---------------------------------------------------------------
missing=()
for t in gcc:gcc g++:g++ valgrind:valgrind pkg-config:pkg-config node:nodejs npm:npm; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- header drift --------------------------------------------------------
scripts/gen-header.sh "$TMP/fal_realtime.h"
if diff -u include/fal_realtime.h "$TMP/fal_realtime.h"; then
  ok "include/fal_realtime.h is up to date"
else
  bad "include/fal_realtime.h differs from the generated header (run scripts/gen-header.sh)"
fi

# ---- build ---------------------------------------------------------------
cargo build --release -p fal-realtime -p fal-realtime-emulator
LIBDIR="$ROOT/target/release"
EMU_BIN="$ROOT/target/release/fal-realtime"

"$EMU_BIN" serve --port 0 >"$TMP/emu.log" 2>&1 &
EMU_PID=$!
HOSTPORT=""
for _ in $(seq 1 100); do
  HOSTPORT="$(grep -o 'ws host 127\.0\.0\.1:[0-9]*' "$TMP/emu.log" | head -1 | sed 's/ws host //')" || true
  [ -n "$HOSTPORT" ] && break
  kill -0 "$EMU_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$HOSTPORT" ]; then
  cat "$TMP/emu.log"
  echo "the emulator did not start"
  exit 1
fi
echo "emulator on $HOSTPORT"
export FAL_RT_EMULATOR="$HOSTPORT"

CFLAGS=(-std=c11 -Wall -Wextra -Werror -g -I"$ROOT/include")
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -g -I"$ROOT/include" -I"$ROOT/bindings/c/include")
LINK=(-L"$LIBDIR" -lfal_realtime -Wl,-rpath,"$LIBDIR" -lpthread)
SAN=(-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# Run a demo and assert its output: NAME EXPECTED_RESULT_LINES EXPECTED_DONE_LINE CMD...
run_demo() {
  local name="$1" want_results="$2" want_done="$3"
  shift 3
  local out
  out="$TMP/$(echo "$name" | tr -c 'A-Za-z0-9\n' _)"
  if "$@" >"$out.out" 2>"$out.err" &&
    [ "$(grep -c '^result frame-[0-9]*: {.*"request_id":"frame-[0-9]*"' "$out.out")" = "$want_results" ] &&
    grep -qx "$want_done" "$out.out"; then
    ok "$name"
  else
    cat "$out.out" "$out.err" || true
    bad "$name"
  fi
}

# ---- examples ------------------------------------------------------------
gcc "${CFLAGS[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/realtime_demo" "${LINK[@]}"
g++ "${CXXFLAGS[@]}" bindings/c/examples/realtime_demo.cpp -o "$TMP/realtime_demo_cpp" "${LINK[@]}"
run_demo "C example" 5 "done: 5 results, 0 errors, 5 frames sent" "$TMP/realtime_demo" "$HOSTPORT" demo/echo 5
run_demo "C++ example" 5 "done: 5 results, 0 errors, pulled 1" "$TMP/realtime_demo_cpp" "$HOSTPORT" demo/echo 5
grep -q '^pulled pull-0: {"prompt":"a dog","request_id":"pull-0"}$' "$TMP/C___example.out" &&
  ok "C++ example: pull session" || bad "C++ example: pull session"

# ---- C tests -------------------------------------------------------------
# Runs the C test binary (a wrapper command may precede it); counts its cases.
run_tests() {
  local name="$1"
  shift
  local rc=0
  "$@" >"$TMP/tests.out" 2>"$TMP/tests.err" || rc=$?
  local line p f
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/tests.out" | tail -1)" || true
  p="$(echo "$line" | awk '{print $1}')"
  f="$(echo "$line" | awk '{print $3}')"
  if [ "$rc" -eq 0 ] && [ -n "$line" ] && [ "$f" = 0 ]; then
    ok "$name ($p cases)" "$p"
  else
    cat "$TMP/tests.out" || true
    tail -100 "$TMP/tests.err" || true
    bad "$name (exit $rc)" "$(( ${f:-0} > 0 ? f : 1 ))"
    [ -n "$p" ] && passed=$((passed + p))
  fi
  return 0
}

gcc "${CFLAGS[@]}" -Itests/c tests/c/test_ffi.c -o "$TMP/test_ffi" "${LINK[@]}"
gcc "${CFLAGS[@]}" "${SAN[@]}" -Itests/c tests/c/test_ffi.c -o "$TMP/test_ffi_asan" "${LINK[@]}"
gcc "${CFLAGS[@]}" "${SAN[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/realtime_demo_asan" "${LINK[@]}"
run_tests "C tests" "$TMP/test_ffi"
run_tests "C tests under ASan/UBSan" "$TMP/test_ffi_asan"
run_demo "C example under ASan/UBSan" 5 "done: 5 results, 0 errors, 5 frames sent" "$TMP/realtime_demo_asan" "$HOSTPORT" demo/echo 5
VALGRIND=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
  --show-leak-kinds=definite --suppressions="$ROOT/tests/c/valgrind.supp")
run_tests "C tests under valgrind" "${VALGRIND[@]}" "$TMP/test_ffi"
run_demo "C example under valgrind" 5 "done: 5 results, 0 errors, 5 frames sent" "${VALGRIND[@]}" "$TMP/realtime_demo" "$HOSTPORT" demo/echo 5

# ---- pkg-config ----------------------------------------------------------
bindings/c/install.sh "$TMP/prefix" >/dev/null
export PKG_CONFIG_PATH="$TMP/prefix/lib/pkgconfig"
if [ "$(pkg-config --modversion fal-realtime)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ]; then
  # shellcheck disable=SC2046
  gcc "${CFLAGS[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/demo_pkgconfig" \
    $(pkg-config --cflags --libs fal-realtime) -Wl,-rpath,"$TMP/prefix/lib" -lpthread
  run_demo "pkg-config build (shared)" 3 "done: 3 results, 0 errors, 3 frames sent" "$TMP/demo_pkgconfig" "$HOSTPORT" demo/echo 3
  # shellcheck disable=SC2046
  gcc "${CFLAGS[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/demo_static" \
    $(pkg-config --cflags fal-realtime) -Wl,-Bstatic -lfal_realtime -Wl,-Bdynamic \
    $(pkg-config --static --libs-only-L --libs-only-other fal-realtime) \
    $(pkg-config --static --libs-only-l fal-realtime | sed 's/-lfal_realtime//')
  if ldd "$TMP/demo_static" | grep -q libfal_realtime; then
    bad "pkg-config build (static) links the shared library"
  else
    run_demo "pkg-config build (static)" 3 "done: 3 results, 0 errors, 3 frames sent" "$TMP/demo_static" "$HOSTPORT" demo/echo 3
  fi
else
  bad "pkg-config --modversion fal-realtime"
fi

# ---- Node.js (koffi) -----------------------------------------------------
(cd bindings/node-ffi-example && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
if FAL_RT_LIB="$LIBDIR/libfal_realtime.so" timeout 120 node bindings/node-ffi-example/index.js "$HOSTPORT" demo/echo \
  >"$TMP/node.out" 2>&1 && grep -qx 'node: done: 3 results, pulled 1' "$TMP/node.out" &&
  [ "$(grep -c '^node: result [0-9]: {.*"request_id":"node-[0-9]"}$' "$TMP/node.out")" = 3 ]; then
  ok "Node.js koffi example"
else
  cat "$TMP/node.out" || true
  bad "Node.js koffi example"
fi

echo "c: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
