#!/usr/bin/env bash
# Regenerates the fault table of tests/RELIABILITY.md: runs the fault-matrix
# tests of every door (Rust, C, Python) with FAL_RT_MATRIX set, collects the
# cells they record, and rewrites the table between the markers.
# Needs the Python venv of scripts/test-python.sh (target/py-venv) for the
# Python doors; without it those columns say "not run".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="$ROOT/target/fault-matrix.jsonl"
rm -f "$OUT"
export FAL_RT_MATRIX="$OUT"

cargo build -q --release -p fal-realtime -p fal-realtime-emulator
# Programs linked against target/release need the library under its SONAME.
ln -sfn libfal_realtime.so target/release/libfal_realtime.so.0
cargo test -q --test fault_matrix >/dev/null

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-rel.XXXXXX")"
source scripts/emulator.sh
trap 'stop_emulators; rm -rf "$TMP"' EXIT
start_emulator HOSTPORT plain
gcc -std=c11 -O1 -g -Iinclude tests/c/test_ffi.c -o target/fault_matrix_c \
  -Ltarget/release -lfal_realtime -Wl,-rpath,"$ROOT/target/release" -lpthread
FAL_RT_EMULATOR="$HOSTPORT" target/fault_matrix_c fault_matrix >/dev/null

if [ -x target/py-venv/bin/python ]; then
  (cd bindings/python && FAL_REALTIME_EMULATOR="$ROOT/target/release/fal-realtime" \
    ../../target/py-venv/bin/python -m pytest -p no:cacheprovider -q tests/test_fault_matrix.py >/dev/null)
fi

python3 - "$OUT" tests/RELIABILITY.md <<'PY'
import json, sys
cells = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
doors = ["Rust callback", "Rust pull", "C callback", "C session", "C ws",
         "Python sync", "Python asyncio", "Python callback", "Python ws"]
order = ["server stops answering", "network stall (proxy)", "pongs late (within the timeout)",
         "connection reset", "cut mid-frame", "cut mid-frame (proxy)", "oversized frame",
         "abnormal close 4001", "latency 40 ms ± 10 ms", "handshake stalls",
         "token: unexpected body", "token: HTTP 500", "token: HTTP 401", "token: hangs",
         "token: connection reset"]
seen = {c["fault"] for c in cells}
faults = [f for f in order if f in seen] + sorted(seen - set(order))
table = {(c["door"], c["fault"]): c["outcome"] for c in cells}
lines = ["| fault | " + " | ".join(doors) + " |", "|---" * (len(doors) + 1) + "|"]
for f in faults:
    lines.append("| " + f + " | " + " | ".join(table.get((d, f), "·") for d in doors) + " |")
text = open(sys.argv[2]).read()
start, end = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
a, b = text.index(start) + len(start), text.index(end)
open(sys.argv[2], "w").write(text[:a] + "\n" + "\n".join(lines) + "\n" + text[b:])
print(f"{len(cells)} cells, {len(faults)} faults, {len(doors)} doors")
PY
