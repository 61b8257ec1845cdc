#!/usr/bin/env bash
# C / C++ / Node stage of scripts/test.sh:
#   header drift check (pinned cbindgen), release library + emulator build,
#   header checks (standalone C11 and C++17 with -pedantic, version macros vs
#   Cargo.toml), C and C++ demos (-Wall -Wextra -Werror, output asserted), the
#   C ABI tests, the thread hook tests (tests/c/test_threads.c) and the C++ wrapper's error tests plain, under
#   AddressSanitizer/UBSan and under valgrind, the install (bindings/c/install.sh:
#   SONAME, stripped, layout, licences, DESTDIR), a pkg-config build (shared and
#   static), a CMake find_package build (shared and static, version file), and
#   the Node.js koffi example.
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
# has PATTERN CMD...: CMD's standard output matches PATTERN. Not `CMD | grep -q`: under pipefail,
# grep -q exits at its first match, CMD can then die of SIGPIPE, and the pipeline fails although
# it matched (a CI run failed so on ldd, whose loader writes one line at a time).
has() {
  local pat="$1" out
  shift
  out="$("$@" 2>/dev/null)" || true
  grep -q -- "$pat" <<<"$out"
}

# ---- tools ---------------------------------------------------------------
missing=()
for t in gcc:gcc g++:g++ valgrind:valgrind pkg-config:pkg-config node:nodejs npm:npm cmake:cmake \
  readelf:binutils strip:binutils file:file; do
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

# ---- header checks ---------------------------------------------------------
# The header compiles on its own, as C11 and as C++17 (with the C++ wrapper).
printf '#include <fal_realtime.h>\n' >"$TMP/header_only.c"
if gcc -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude "$TMP/header_only.c"; then
  ok "fal_realtime.h compiles standalone as C11 (-pedantic)"
else
  bad "fal_realtime.h compiles standalone as C11 (-pedantic)"
fi
printf '#include <fal_realtime.h>\n#include <fal_realtime.hpp>\n' >"$TMP/header_only.cpp"
if g++ -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude -Ibindings/c/include "$TMP/header_only.cpp"; then
  ok "fal_realtime.h + fal_realtime.hpp compile standalone as C++17 (-pedantic)"
else
  bad "fal_realtime.h + fal_realtime.hpp compile standalone as C++17 (-pedantic)"
fi
# The header's version macros are the crate's version.
CRATE_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' Cargo.toml)"
hdr_macro() { sed -n "s/^#define FAL_RT_VERSION_$1 \(.*\)$/\1/p" include/fal_realtime.h; }
IFS=. read -r v_major v_minor v_patch <<<"${CRATE_VERSION%%[-+]*}"
if [ "$(hdr_macro MAJOR)" = "$v_major" ] && [ "$(hdr_macro MINOR)" = "$v_minor" ] &&
  [ "$(hdr_macro PATCH)" = "$v_patch" ] && [ "$(hdr_macro STRING)" = "\"$CRATE_VERSION\"" ] &&
  [ "$(hdr_macro NUMBER)" = "$((v_major * 10000 + v_minor * 100 + v_patch))" ]; then
  ok "header FAL_RT_VERSION_* = Cargo.toml version $CRATE_VERSION"
else
  grep '^#define FAL_RT_VERSION_' include/fal_realtime.h || true
  bad "header FAL_RT_VERSION_* differ from Cargo.toml version $CRATE_VERSION (cbindgen.toml after_includes)"
fi

# ---- build ---------------------------------------------------------------
cargo build --release -p fal-realtime -p fal-realtime-emulator
LIBDIR="$ROOT/target/release"
EMU_BIN="$ROOT/target/release/fal-realtime"
soname_of() { readelf -d "$1" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p'; }
SONAME="$(soname_of "$LIBDIR/libfal_realtime.so")"
if [ "$SONAME" = "libfal_realtime.so.0" ]; then
  ok "libfal_realtime.so has SONAME $SONAME"
else
  bad "libfal_realtime.so has SONAME '${SONAME}', want libfal_realtime.so.0"
fi
# Programs linked against target/release load the library under its SONAME.
[ -n "$SONAME" ] && ln -sfn libfal_realtime.so "$LIBDIR/$SONAME"

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
g++ "${CXXFLAGS[@]}" bindings/c/tests/test_cpp_errors.cpp -o "$TMP/test_cpp_errors" "${LINK[@]}"
g++ "${CXXFLAGS[@]}" "${SAN[@]}" bindings/c/tests/test_cpp_errors.cpp -o "$TMP/test_cpp_errors_asan" "${LINK[@]}"
gcc "${CFLAGS[@]}" tests/c/test_client_only.c -o "$TMP/test_client_only" "${LINK[@]}"
gcc "${CFLAGS[@]}" "${SAN[@]}" tests/c/test_client_only.c -o "$TMP/test_client_only_asan" "${LINK[@]}"
gcc "${CFLAGS[@]}" -Itests/c tests/c/test_threads.c -o "$TMP/test_threads" "${LINK[@]}"
gcc "${CFLAGS[@]}" "${SAN[@]}" -Itests/c tests/c/test_threads.c -o "$TMP/test_threads_asan" "${LINK[@]}"
run_tests "C tests" "$TMP/test_ffi"
run_tests "C tests under ASan/UBSan" "$TMP/test_ffi_asan"
run_tests "C clientOnly tests" "$TMP/test_client_only"
run_tests "C clientOnly tests under ASan/UBSan" "$TMP/test_client_only_asan"
run_tests "C thread hook tests" "$TMP/test_threads"
run_tests "C thread hook tests under ASan/UBSan" "$TMP/test_threads_asan"
run_tests "C++ wrapper error tests" "$TMP/test_cpp_errors"
run_tests "C++ wrapper error tests under ASan/UBSan" "$TMP/test_cpp_errors_asan"
run_demo "C example under ASan/UBSan" 5 "done: 5 results, 0 errors, 5 frames sent" "$TMP/realtime_demo_asan" "$HOSTPORT" demo/echo 5
VALGRIND=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
  --show-leak-kinds=definite --suppressions="$ROOT/tests/c/valgrind.supp")
run_tests "C tests under valgrind" "${VALGRIND[@]}" "$TMP/test_ffi"
run_tests "C clientOnly tests under valgrind" "${VALGRIND[@]}" "$TMP/test_client_only"
run_tests "C thread hook tests under valgrind" "${VALGRIND[@]}" "$TMP/test_threads"
run_tests "C++ wrapper error tests under valgrind" "${VALGRIND[@]}" "$TMP/test_cpp_errors"
run_demo "C example under valgrind" 5 "done: 5 results, 0 errors, 5 frames sent" "${VALGRIND[@]}" "$TMP/realtime_demo" "$HOSTPORT" demo/echo 5

# ---- install ---------------------------------------------------------------
PREFIX="$TMP/prefix"
bindings/c/install.sh "$PREFIX" >/dev/null
REAL="libfal_realtime.so.$CRATE_VERSION"
layout_ok=1
for f in include/fal_realtime.h include/fal_realtime.hpp "lib/$REAL" lib/libfal_realtime.a \
  lib/pkgconfig/fal-realtime.pc lib/cmake/fal_realtime/fal_realtimeConfig.cmake \
  lib/cmake/fal_realtime/fal_realtimeConfigVersion.cmake \
  share/doc/fal-realtime/LICENSE-MIT share/doc/fal-realtime/LICENSE-APACHE; do
  [ -f "$PREFIX/$f" ] && [ ! -L "$PREFIX/$f" ] || { echo "missing $PREFIX/$f"; layout_ok=0; }
done
for l in libfal_realtime.so.0 libfal_realtime.so; do
  [ "$(readlink "$PREFIX/lib/$l")" = "$REAL" ] || { echo "$PREFIX/lib/$l does not link to $REAL"; layout_ok=0; }
done
cmp -s LICENSE-MIT "$PREFIX/share/doc/fal-realtime/LICENSE-MIT" &&
  cmp -s LICENSE-APACHE "$PREFIX/share/doc/fal-realtime/LICENSE-APACHE" || layout_ok=0
if [ "$layout_ok" = 1 ]; then
  ok "install layout (lib/$REAL, .so.0 and .so links, .a, headers, .pc, CMake package, licences)"
else
  find "$PREFIX" | sort
  bad "install layout"
fi
if [ "$(soname_of "$PREFIX/lib/$REAL")" = "libfal_realtime.so.0" ]; then
  ok "installed library has SONAME libfal_realtime.so.0"
else
  readelf -d "$PREFIX/lib/$REAL" | head -20 || true
  bad "installed library has SONAME libfal_realtime.so.0"
fi
if ! has '\.symtab' readelf -S "$PREFIX/lib/$REAL" && has ', stripped' file -L "$PREFIX/lib/$REAL"; then
  ok "installed library is stripped"
else
  file -L "$PREFIX/lib/$REAL" || true
  bad "installed library is stripped"
fi
if DESTDIR="$TMP/stage" bindings/c/install.sh /opt/fal-realtime >/dev/null &&
  [ -f "$TMP/stage/opt/fal-realtime/lib/$REAL" ] &&
  grep -qx 'prefix=/opt/fal-realtime' "$TMP/stage/opt/fal-realtime/lib/pkgconfig/fal-realtime.pc"; then
  ok "install with DESTDIR (staged, prefix kept)"
else
  bad "install with DESTDIR"
fi

# ---- pkg-config ----------------------------------------------------------
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
if [ "$(pkg-config --modversion fal-realtime)" = "$CRATE_VERSION" ]; then
  # shellcheck disable=SC2046
  gcc "${CFLAGS[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/demo_pkgconfig" \
    $(pkg-config --cflags --libs fal-realtime) -Wl,-rpath,"$TMP/prefix/lib" -lpthread
  run_demo "pkg-config build (shared)" 3 "done: 3 results, 0 errors, 3 frames sent" "$TMP/demo_pkgconfig" "$HOSTPORT" demo/echo 3
  if has 'NEEDED.*\[libfal_realtime\.so\.0\]' readelf -d "$TMP/demo_pkgconfig" &&
    has "libfal_realtime\.so\.0 => $PREFIX/lib/" ldd "$TMP/demo_pkgconfig"; then
    ok "pkg-config build (shared) needs libfal_realtime.so.0 from the prefix"
  else
    ldd "$TMP/demo_pkgconfig" || true
    bad "pkg-config build (shared) needs libfal_realtime.so.0 from the prefix"
  fi
  # shellcheck disable=SC2046
  gcc "${CFLAGS[@]}" bindings/c/examples/realtime_demo.c -o "$TMP/demo_static" \
    $(pkg-config --cflags fal-realtime) -Wl,-Bstatic -lfal_realtime -Wl,-Bdynamic \
    $(pkg-config --static --libs-only-L --libs-only-other fal-realtime) \
    $(pkg-config --static --libs-only-l fal-realtime | sed 's/-lfal_realtime//')
  if has libfal_realtime ldd "$TMP/demo_static"; then
    bad "pkg-config build (static) links the shared library"
  else
    run_demo "pkg-config build (static)" 3 "done: 3 results, 0 errors, 3 frames sent" "$TMP/demo_static" "$HOSTPORT" demo/echo 3
  fi
else
  bad "pkg-config --modversion fal-realtime"
fi

# ---- CMake ---------------------------------------------------------------
# bindings/c/cmake-example: find_package(fal_realtime CONFIG REQUIRED), a
# shared and a static build of a program checking the library's version.
CMB="$TMP/cmake-example"
if cmake -S bindings/c/cmake-example -B "$CMB" -DCMAKE_PREFIX_PATH="$PREFIX" >"$TMP/cmake.log" 2>&1 &&
  cmake --build "$CMB" >>"$TMP/cmake.log" 2>&1; then
  ok "CMake find_package build (bindings/c/cmake-example)"
  if "$CMB/app" >"$TMP/cmake-app.out" 2>&1 && has "libfal_realtime\.so\.0 => $PREFIX/lib/" ldd "$CMB/app"; then
    ok "CMake build (fal_realtime::fal_realtime): version matches the header"
  else
    cat "$TMP/cmake-app.out"; ldd "$CMB/app" || true
    bad "CMake build (fal_realtime::fal_realtime)"
  fi
  if "$CMB/app_static" >"$TMP/cmake-app.out" 2>&1 && ! has libfal_realtime ldd "$CMB/app_static"; then
    ok "CMake build (fal_realtime::fal_realtime_static): version matches the header"
  else
    cat "$TMP/cmake-app.out"; ldd "$CMB/app_static" || true
    bad "CMake build (fal_realtime::fal_realtime_static)"
  fi
else
  cat "$TMP/cmake.log"
  bad "CMake find_package build (bindings/c/cmake-example)"
fi
# The version file: the same 0.MINOR (or MAJOR from 1.0) is accepted, others not.
mkdir -p "$TMP/cmake-versions"
cat >"$TMP/cmake-versions/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.10)
project(fal_rt_versions LANGUAGES C)
foreach(v IN LISTS WANT)
  find_package(fal_realtime ${v} CONFIG QUIET)
  message(STATUS "fal_realtime ${v}: ${fal_realtime_FOUND}")
  unset(fal_realtime_FOUND)
  unset(fal_realtime_DIR CACHE)
endforeach()
EOF
if [ "$v_major" = 0 ]; then
  want_yes="0.$v_minor;$CRATE_VERSION" want_no="0.$((v_minor + 1));1"
  [ "$v_minor" -gt 0 ] && want_no="$want_no;0.$((v_minor - 1))"
else
  want_yes="$v_major;$v_major.$v_minor;$CRATE_VERSION" want_no="$((v_major + 1));$((v_major - 1))"
fi
if cmake -S "$TMP/cmake-versions" -B "$TMP/cmake-versions/build" -DCMAKE_PREFIX_PATH="$PREFIX" \
  "-DWANT=$want_yes;$want_no" >"$TMP/cmake-versions.log" 2>&1; then
  versions_ok=1
  IFS=';' read -r -a yes_list <<<"$want_yes"
  IFS=';' read -r -a no_list <<<"$want_no"
  for v in "${yes_list[@]}"; do grep -qx -- "-- fal_realtime $v: 1" "$TMP/cmake-versions.log" || versions_ok=0; done
  for v in "${no_list[@]}"; do grep -qx -- "-- fal_realtime $v: 0" "$TMP/cmake-versions.log" || versions_ok=0; done
  if [ "$versions_ok" = 1 ]; then
    ok "CMake version file (accepts $want_yes, refuses $want_no)"
  else
    grep -- '-- fal_realtime ' "$TMP/cmake-versions.log" || true
    bad "CMake version file (accepts $want_yes, refuses $want_no)"
  fi
else
  cat "$TMP/cmake-versions.log"
  bad "CMake version file"
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
