#!/usr/bin/env bash
# Snippets stage of scripts/test.sh: every fenced code block of every README
# runs as written (scripts/snippets.py: the conventions are in its docstring
# and in DEVELOPERS.md). Builds what the blocks need (the release library and
# CLI; the Python wheel into a venv unless an installed one is newer than the
# sources), starts an emulator on a free port, points FAL_RUN_HOST /
# FAL_REST_URL / FAL_KEY at it as the root README says, puts target/release on
# PATH, and runs the Rust (one package, one build), C, C++, Python, shell, Go
# and C# blocks (Go / C# where their toolchains are installed), each under a
# timeout. Prints `snippets: N passed, N failed`.
# Environment: PY_VENV (a venv with the wheel to use), SNIPPET_ONLY=rust,c,...
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fal-rt-snippets.XXXXXX")"
source scripts/emulator.sh
cleanup() {
  stop_emulators
  rm -rf "$TMP"
}
trap cleanup EXIT
started=$(date +%s)
PYTHON=${PYTHON:-python3}

# The extractor's own rules, then: the blocks are well-formed and classified before anything is built.
"$PYTHON" scripts/snippets.py selftest
"$PYTHON" scripts/snippets.py list >/dev/null || { "$PYTHON" scripts/snippets.py list; exit 1; }

# A venv whose wheel is newer than every source it is built from, else a fresh install.
newest_source() {
  find src bindings/python/src bindings/python/python bindings/python/Cargo.toml bindings/python/pyproject.toml \
    Cargo.toml Cargo.lock -type f -printf '%T@\n' | sort -n | tail -1
}
wheel_time() {
  local so
  so=$(ls "$1"/lib/python3*/site-packages/fal_realtime/_native*.so 2>/dev/null | head -1) || true
  [ -n "$so" ] && stat -c %Y "$so" || echo 0
}
src_time=$(newest_source)
VENV=""
for v in ${PY_VENV:-} target/py-venv target/snippets-venv; do
  if [ -x "$v/bin/python" ] && [ "$(wheel_time "$v")" -ge "${src_time%.*}" ]; then VENV=$v; break; fi
done
if [ -z "$VENV" ]; then
  VENV=target/snippets-venv
  echo "== snippets: installing the wheel into $VENV (pip install ./bindings/python)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir \
    ./bindings/python
fi
echo "== snippets: python $VENV"

# After the wheel: maturin builds in the same target dir, and may rebuild the
# library with other features.
cargo build --release -q -p fal-realtime -p fal-realtime-emulator
ln -sfn libfal_realtime.so target/release/libfal_realtime.so.0

start_emulator EMU snippets || { echo "the emulator did not start"; exit 1; }
echo "== snippets: emulator on $EMU"
unset FAL_KEY_ID FAL_KEY_SECRET
export FAL_RUN_HOST="ws://$EMU" FAL_REST_URL="http://$EMU" FAL_KEY=test-key
export SNIPPET_PYTHON="$ROOT/$VENV/bin/python" SNIPPET_TARGET="$ROOT/target" SNIPPET_TMP="$TMP/work"
export GOCACHE="${GOCACHE:-$ROOT/target/go-cache}"
rc=0
"$PYTHON" scripts/snippets.py run || rc=$?
echo "== snippets: $(( $(date +%s) - started )) s"
exit "$rc"
