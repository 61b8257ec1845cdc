#!/usr/bin/env bash
# Fuzzing: builds the cargo-fuzz targets in fuzz/ (nightly, release with debug
# assertions, AddressSanitizer: cargo-fuzz's defaults), replays every saved
# reproducer in fuzz/regressions/<target>/, then fuzzes each target for
# SECONDS_PER_TARGET seconds from a fresh corpus fuzz/corpus/<target> seeded
# with fuzz/seeds/<target>. Installs cargo-fuzz if it is missing.
#
# Usage: scripts/test-fuzz.sh [SECONDS_PER_TARGET]     (default 20; 0 = replay only)
# Env:   FUZZ_TARGETS="classify endpoint"   only these targets (default: all)
#        FUZZ_ALLOW_KNOWN=1                 tolerate the findings already reported
#                                           (tests/FUZZING.md); anything else still fails
#        FUZZ_MAX_LEN=65536                 libFuzzer -max_len
#
# Prints one summary line per target and, last, `fuzz: N passed, M failed`
# (N, M = targets). Exits non-zero when any target fails to build, a
# regression input fails, or fuzzing finds a crash (artifacts in fuzz/artifacts/<target>/).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${1:-20}
if ! [[ "$secs" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi
max_len=${FUZZ_MAX_LEN:-65536}

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked || {
    echo "fuzz: 0 passed, 1 failed (could not install cargo-fuzz)"
    exit 1
  }
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz)}
n_targets=$(wc -w <<<"$targets")
if [ "$n_targets" -eq 0 ]; then
  echo "fuzz: 0 passed, 0 failed (no targets)"
  exit 1
fi

echo "== building fuzz targets ($(cargo +nightly --version))"
# -O -a: release optimisations with debug assertions and overflow checks.
if ! cargo +nightly fuzz build --fuzz-dir fuzz -O -a; then
  echo "fuzz: 0 passed, $n_targets failed (build failed)"
  exit 1
fi
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bindir="$root/fuzz/target/$triple/release"

passed=0
failed=0
summary=()
for t in $targets; do
  bin="$bindir/$t"
  ok=1
  notes=()
  if [ ! -x "$bin" ]; then
    echo "== $t: no binary at $bin"
    failed=$((failed + 1))
    summary+=("fuzz: $t: FAILED (not built)")
    continue
  fi

  # 1. Regressions: each saved input is run once and must not crash.
  reg="fuzz/regressions/$t"
  n_reg=0
  n_reg_bad=0
  if [ -d "$reg" ]; then
    while IFS= read -r -d '' f; do
      n_reg=$((n_reg + 1))
      if ! out=$("$bin" -runs=1 -timeout=10 -rss_limit_mb=2560 "$f" 2>&1); then
        n_reg_bad=$((n_reg_bad + 1))
        echo "== $t: regression $f FAILS:"
        grep -A1 -m1 "panicked at" <<<"$out" || grep -m1 "ERROR: libFuzzer\|ERROR: AddressSanitizer" <<<"$out" ||
          tail -n 15 <<<"$out"
      fi
    done < <(find "$reg" -type f ! -name '*.md' -print0 | sort -z)
  fi
  if [ "$n_reg" -gt 0 ]; then
    notes+=("regressions $((n_reg - n_reg_bad))/$n_reg ok")
    [ "$n_reg_bad" -eq 0 ] || ok=0
  fi

  # 2. Fuzzing from a fresh corpus (seeds are read from fuzz/seeds/<target>, new units go to fuzz/corpus/<target>).
  if [ "$secs" -gt 0 ]; then
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts" "fuzz/seeds/$t"
    args=(-max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2560
      -print_final_stats=1 -artifact_prefix="$artifacts/")
    [ -f "fuzz/dicts/$t.dict" ] && args+=(-dict="fuzz/dicts/$t.dict")
    log="$artifacts/fuzz.log"
    echo "== $t: fuzzing ${secs}s"
    "$bin" "${args[@]}" "$corpus" "fuzz/seeds/$t" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -n1 | tr -d '#')
    corp=$(find "$corpus" -type f | wc -l)
    notes+=("${execs:-?} execs (${rate:-?}/s, ${secs}s budget), corpus $corp")
    if [ "$rc" -ne 0 ] || grep -q "^==[0-9]*== ERROR\|panicked at\|Test unit written" "$log"; then
      ok=0
      echo "== $t: fuzzing FAILED (exit $rc), log $log:"
      { grep -A1 -m1 "panicked at" "$log" || grep -m1 "ERROR: libFuzzer\|ERROR: AddressSanitizer" "$log"; } | cut -c1-600
      grep "Test unit written" "$log"
      notes+=("CRASH, see $artifacts/; reduce with: cargo +nightly fuzz tmin $t <artifact>")
    fi
  fi

  line="fuzz: $t: $([ "$ok" -eq 1 ] && echo ok || echo FAILED)"
  [ ${#notes[@]} -eq 0 ] || line+=$(printf ', %s' "${notes[@]}")
  echo "$line"
  summary+=("$line")
  if [ "$ok" -eq 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
