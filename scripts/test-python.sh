#!/usr/bin/env bash
# Python stage: build the wheel from source into a fresh-able venv and run the
# pytest suite against the emulator (with the differential run of a fal_client
# scenario under fal_client 1.0.3 and under fal_realtime), then the typing checks, then the interop
# tests against fal's own server-side realtime template (when the `fal`
# package installs here; otherwise those tests are skipped with the reason).
#
# Needs only: cargo, python3 (>= 3.9) with venv and pip, and PyPI.
# Environment:
#   PY_VENV            venv to use (default target/py-venv; created if missing)
#   PYTHON             interpreter that creates the venvs (default python3)
#   FAL_INTEROP=0      skip installing `fal` for the interop tests
#   PYTEST_ARGS        extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PYTHON=${PYTHON:-python3}
VENV=${PY_VENV:-target/py-venv}
FAL_VENV=target/py-venv-fal
# Pinned test tools (and msgpack-python, to check byte-for-byte agreement;
# fal-client, for the differential test of `import fal_realtime as fal_client`).
TOOLS=(maturin==1.16.0 pytest==9.2.0 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 mypy==2.4.1 msgpack==1.2.4
  fal-client==1.0.3)
FAL_PKG=fal==1.83.0

step() { echo "== python: $*"; }

step "cargo clippy -p fal-realtime-python -- -D warnings"
cargo clippy -q -p fal-realtime-python -- -D warnings

step "venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$ROOT/$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check "${TOOLS[@]}"

# The interop venv installs in the background while the wheel builds.
fal_pid=""
if [ "${FAL_INTEROP:-1}" != "0" ]; then
  (
    set +e
    [ -x "$FAL_VENV/bin/python" ] || "$PYTHON" -m venv "$FAL_VENV"
    timeout 420 "$FAL_VENV/bin/python" -m pip install -q --disable-pip-version-check "$FAL_PKG" uvicorn \
      > target/py-fal-install.log 2>&1
    echo $? > target/py-fal-install.rc
  ) &
  fal_pid=$!
fi

step "build and install the wheel from source (pip install ./bindings/python)"
started=$(date +%s)
"$PY" -m pip install --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir ./bindings/python
"$PY" - <<'EOF'
import fal_realtime, fal_realtime._native as n, os
print(f"fal_realtime {fal_realtime.__version__} from {os.path.dirname(n.__file__)} ({os.path.basename(n.__file__)})")
EOF
echo "wheel built and installed in $(( $(date +%s) - started )) s"

step "emulator (release)"
cargo build --release -q -p fal-realtime-emulator
export FAL_REALTIME_EMULATOR="$ROOT/target/release/fal-realtime"

if [ -n "$fal_pid" ]; then
  wait "$fal_pid" || true
  rc=$(cat target/py-fal-install.rc 2>/dev/null || echo 1)
  if [ "$rc" = "0" ] && "$FAL_VENV/bin/python" -c "import fal.realtime, fastapi, uvicorn" 2>/dev/null; then
    export FAL_REFERENCE_PYTHON="$ROOT/$FAL_VENV/bin/python"
    echo "interop: fal installed ($("$FAL_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("fal"))'))"
  else
    reason="pip install $FAL_PKG failed here (exit $rc): $(tail -n 3 target/py-fal-install.log 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
    export FAL_REFERENCE_SKIP_REASON="$reason"
    echo "interop: $reason"
  fi
else
  export FAL_REFERENCE_SKIP_REASON="FAL_INTEROP=0"
fi

step "pytest"
cd bindings/python
# shellcheck disable=SC2086
timeout 600 "$PY" -m pytest -p no:cacheprovider --timeout 120 -ra tests ${PYTEST_ARGS:-}

step "mypy --strict (typed usage, the package) and stubtest (the extension's stubs)"
"$PY" -m mypy --strict --no-incremental tests/typing/usage.py
(cd "$ROOT/target" && "$PY" -m mypy --strict --no-incremental -p fal_realtime)
(cd "$ROOT/target" && "$PY" -m mypy.stubtest fal_realtime._native)
echo "python: all checks passed"
