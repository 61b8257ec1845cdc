#!/usr/bin/env bash
# Python stage: build the release manylinux2014 abi3 wheel (maturin + zig),
# check its platform tag (auditwheel), its licence files and metadata, and the
# sdist's contents; install that exact wheel and run the whole pytest suite
# against it on the main interpreter (with the differential run of a fal_client
# scenario under fal_client 1.0.3 and under fal_realtime, and the interop tests
# against fal's own server-side realtime template when the `fal` package
# installs here; otherwise those are skipped with the reason), the typing
# checks, then the tests that need only pytest on every other CPython
# 3.9-3.13 found here, each in a fresh venv with the same wheel.
#
# Needs only: cargo, python3 (>= 3.9) with venv and pip, and PyPI (maturin,
# ziglang, auditwheel and the test tools are pinned below).
# Environment:
#   PY_VENV            venv of the main interpreter (default target/py-venv; created if missing)
#   PYTHON             the main interpreter (default python3)
#   FAL_INTEROP=0      skip installing `fal` for the interop tests
#   PY_VERSIONS        interpreters of the smoke runs (default "3.9 3.10 3.11 3.12 3.13")
#   PY_SDIST_BUILD=1   also build a wheel from the sdist (pip wheel; a full cold build, slow)
#   PYTEST_ARGS        extra pytest arguments (main interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PYTHON=${PYTHON:-python3}
VENV=${PY_VENV:-target/py-venv}
FAL_VENV=target/py-venv-fal
WHEELS=target/wheels
SDIST_DIR=target/sdist
# Pinned build and test tools (and msgpack-python, to check byte-for-byte agreement;
# fal-client, for the differential test of `import fal_realtime as fal_client`;
# uvloop, the other event loop the README promises).
TOOLS=(maturin==1.16.0 ziglang==0.17.0 auditwheel==6.8.2
  pytest==9.2.0 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 mypy==2.4.1 msgpack==1.2.4
  fal-client==1.0.3 uvloop==0.23.0)
# The smoke venvs (pytest 9 and pytest-asyncio 1.3+ need Python >= 3.10; these cover 3.9-3.13).
SMOKE_TOOLS=(pytest==8.4.2 pytest-asyncio==1.2.0 pytest-timeout==2.4.0)
# Smoke subset (about 120 tests, a few seconds): the files that need nothing but
# pytest: import and the installed files, the codec, realtime sync, async and
# callback styles, ws_connect, the error paths. Not the differential, fault,
# interop and example tests (they need fal-client, msgpack or fal).
SMOKE_TESTS=(tests/test_api.py tests/test_codec.py tests/test_sync.py tests/test_async.py
  tests/test_callbacks.py tests/test_ws.py tests/test_errors.py)
read -r -a PY_VERSIONS <<<"${PY_VERSIONS:-3.9 3.10 3.11 3.12 3.13}"
FAL_PKG=fal==1.83.0

step() { echo "== python: $*"; }
stage_started=$(date +%s)

step "cargo clippy -p fal-realtime-python -- -D warnings"
cargo clippy -q -p fal-realtime-python -- -D warnings

step "venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$ROOT/$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check "${TOOLS[@]}"
MAIN_VERSION=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

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

step "build the release manylinux2014 wheel (maturin build --release --zig --compatibility manylinux2014)"
started=$(date +%s)
# target/wheels holds this one wheel only (the bench builds its own elsewhere).
rm -f "$WHEELS"/fal_realtime-*.whl
# maturin finds zig through `python -m ziglang` of the venv's python.
PATH="$ROOT/$VENV/bin:$PATH" "$ROOT/$VENV/bin/maturin" build --release --zig --compatibility manylinux2014 \
  -m bindings/python/Cargo.toml --out "$WHEELS"
shopt -s nullglob
wheels=("$WHEELS"/fal_realtime-*.whl)
shopt -u nullglob
if [ ${#wheels[@]} -ne 1 ]; then
  echo "python: expected one wheel in $WHEELS, found ${#wheels[@]}: ${wheels[*]:-none}" >&2
  exit 1
fi
WHEEL="$ROOT/${wheels[0]}"
echo "wheel: ${WHEEL#"$ROOT/"} ($(( $(stat -c %s "$WHEEL") / 1024 )) KiB), built in $(( $(date +%s) - started )) s"

step "auditwheel show: manylinux_2_17 (manylinux2014) or older, x86_64, abi3"
audit=$("$ROOT/$VENV/bin/auditwheel" show "$WHEEL")
echo "$audit"
"$PY" - "$WHEEL" "$audit" <<'EOF'
import re, sys
wheel, audit = sys.argv[1], sys.argv[2]
# auditwheel: '... is consistent with the following platform tag: "manylinux_2_17_x86_64"'
m = re.search(r'following platform tag:\s*"(manylinux_(\d+)_(\d+)_(\w+))"', audit)
if not m:
    sys.exit(f"python: auditwheel show gave no manylinux platform tag for {wheel}")
tag, glibc, arch = m.group(1), (int(m.group(2)), int(m.group(3))), m.group(4)
if glibc > (2, 17) or arch != "x86_64":
    sys.exit(f"python: the wheel needs {tag}: newer than manylinux_2_17_x86_64")
name = wheel.rsplit("/", 1)[-1]
if "-cp39-abi3-" not in name or "manylinux_2_17_x86_64" not in name:
    sys.exit(f"python: unexpected wheel tags in {name} (want cp39-abi3 and manylinux_2_17_x86_64)")
print(f"platform tag {tag}: ok (glibc >= {glibc[0]}.{glibc[1]}, {arch}, abi3 cp39)")
EOF

step "licence files and metadata (wheel)"
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
from email.parser import Parser
wheel = sys.argv[1]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    dist = next(n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info"))
    meta = Parser().parsestr(z.read(f"{dist}/METADATA").decode())
    problems = []
    for lic in ("LICENSE-MIT", "LICENSE-APACHE"):
        path = f"{dist}/licenses/{lic}"
        if path not in names:
            problems.append(f"{path} missing")
        elif z.read(path) != open(lic, "rb").read():
            problems.append(f"{path} differs from the repository's {lic}")
    if meta.get("License-Expression") != "MIT OR Apache-2.0":
        problems.append(f"License-Expression is {meta.get('License-Expression')!r}")
    if sorted(meta.get_all("License-File") or []) != ["LICENSE-APACHE", "LICENSE-MIT"]:
        problems.append(f"License-File is {meta.get_all('License-File')!r}")
    if meta.get("Requires-Python") != ">=3.9":
        problems.append(f"Requires-Python is {meta.get('Requires-Python')!r}")
if problems:
    sys.exit("python: wheel metadata: " + "; ".join(problems))
print(f"{dist}: licenses/LICENSE-MIT, licenses/LICENSE-APACHE, License-Expression: MIT OR Apache-2.0: ok")
EOF

step "sdist (maturin sdist): contents"
rm -rf "$SDIST_DIR"
"$ROOT/$VENV/bin/maturin" sdist -m bindings/python/Cargo.toml --out "$SDIST_DIR" 2>&1 | grep -v "^warning: manifest has no\|^  |$\|^  = note: see" || true
SDIST=$(ls "$SDIST_DIR"/fal_realtime-*.tar.gz)
"$PY" - "$SDIST" <<'EOF'
import re, sys, tarfile
from email.parser import Parser
sdist = sys.argv[1]
with tarfile.open(sdist) as t:
    members = [m for m in t.getmembers() if m.isfile()]
    top = members[0].name.split("/", 1)[0]
    files = sorted(m.name.split("/", 1)[1] for m in members)
    pkg_info = Parser().parsestr(t.extractfile(f"{top}/PKG-INFO").read().decode())
size = sum(m.size for m in members)
print(f"{sdist}: {len(files)} files, {size // 1024} KiB")
for f in files:
    print("  " + f)
# What the wheel needs: the core crate (src, include, build.rs), the Python
# binding, the workspace manifest and lock, licences, README.
required = ["Cargo.toml", "Cargo.lock", "build.rs", "src/lib.rs", "src/ffi/mod.rs", "include/fal_realtime.h",
            "pyproject.toml", "PKG-INFO", "README.md", "LICENSE-MIT", "LICENSE-APACHE",
            "bindings/python/Cargo.toml", "bindings/python/src/lib.rs", "python/fal_realtime/__init__.py",
            "python/fal_realtime/_native.pyi", "python/fal_realtime/py.typed"]
forbidden = re.compile(r"^(target/|fuzz/|bench/|scripts/|tests/|\.git|\.ci/|emulator/tests/|"
                       r"bindings/(c|go|csharp|node-ffi-example)/|.*\.(whl|so|a|tar\.gz|png|jsonl)$)")
problems = [f"missing {r}" for r in required if r not in files]
problems += [f"forbidden {f}" for f in files if forbidden.match(f)]
problems += [f"{f} is {m.size // 1024} KiB" for m, f in zip(members, files) if m.size > 512 * 1024]
if pkg_info.get("License-Expression") != "MIT OR Apache-2.0":
    problems.append(f"PKG-INFO License-Expression is {pkg_info.get('License-Expression')!r}")
if sorted(pkg_info.get_all("License-File") or []) != ["LICENSE-APACHE", "LICENSE-MIT"]:
    problems.append(f"PKG-INFO License-File is {pkg_info.get_all('License-File')!r}")
if problems:
    sys.exit("python: sdist: " + "; ".join(problems))
print("sdist contents: ok (no target/, fuzz/, bench/, scripts/, tests/, emulator tests, other bindings)")
EOF
if [ "${PY_SDIST_BUILD:-0}" = "1" ]; then
  step "pip wheel from the sdist (PY_SDIST_BUILD=1)"
  started=$(date +%s)
  rm -rf target/sdist-wheel
  "$PY" -m pip wheel --disable-pip-version-check --no-deps -w target/sdist-wheel "$SDIST"
  echo "wheel from the sdist built in $(( $(date +%s) - started )) s: $(ls target/sdist-wheel)"
fi

step "emulator (release)"
cargo build --release -q -p fal-realtime-emulator
export FAL_REALTIME_EMULATOR="$ROOT/target/release/fal-realtime"

# Installs the wheel into a venv and checks that `fal_realtime` imports from
# that venv's site-packages; the tests check it again (FAL_REALTIME_EXPECT_INSTALLED).
install_wheel() {
  local py=$1
  "$py" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
  SITE=$(cd / && "$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  (cd / && "$py" - "$SITE" <<'EOF'
import os, sys
import fal_realtime, fal_realtime._native as n
site = os.path.realpath(sys.argv[1])
where = os.path.realpath(n.__file__)
if not where.startswith(site + os.sep):
    sys.exit(f"python: fal_realtime imports from {where}, not from the venv's {site}")
print(f"fal_realtime {fal_realtime.__version__} from {os.path.dirname(where)} ({os.path.basename(where)}), "
      f"Python {sys.version.split()[0]}")
EOF
  )
}

step "install the wheel (Python $MAIN_VERSION, $VENV)"
install_wheel "$PY"
MAIN_SITE=$SITE

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

step "pytest, whole suite (Python $MAIN_VERSION, the installed wheel)"
started=$(date +%s)
cd bindings/python
# shellcheck disable=SC2086
FAL_REALTIME_EXPECT_INSTALLED="$MAIN_SITE" \
  timeout 600 "$PY" -m pytest -p no:cacheprovider --timeout 120 -ra tests ${PYTEST_ARGS:-}
echo "whole suite on Python $MAIN_VERSION in $(( $(date +%s) - started )) s"

step "mypy --strict (typed usage, the package) and stubtest (the extension's stubs)"
"$PY" -m mypy --strict --no-incremental tests/typing/usage.py
(cd "$ROOT/target" && "$PY" -m mypy --strict --no-incremental -p fal_realtime)
(cd "$ROOT/target" && "$PY" -m mypy.stubtest fal_realtime._native)
cd "$ROOT"

# The other interpreters: pyenv's (/root/.pyenv/versions/3.X.*), else python3.X on PATH.
find_python() {
  local v=$1 c
  for c in $(ls -d /root/.pyenv/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V -r) $(command -v "python$v" || true); do
    if [ -x "$c" ] && [ "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$v" ] \
      && "$c" -c 'import venv, ensurepip' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

summary=("$MAIN_VERSION: whole suite passed ($PY)")
ran=("$MAIN_VERSION")
for v in "${PY_VERSIONS[@]}"; do
  [ "$v" != "$MAIN_VERSION" ] || continue
  if ! interp=$(find_python "$v"); then
    echo "== python: Python $v not found (no /root/.pyenv/versions/$v.*/bin/python$v, no python$v on PATH): skipped"
    summary+=("$v: not found, skipped")
    continue
  fi
  step "smoke tests (Python $v, $interp, fresh venv target/py-smoke-$v)"
  started=$(date +%s)
  "$interp" -m venv --clear "target/py-smoke-$v"
  spy="$ROOT/target/py-smoke-$v/bin/python"
  "$spy" -m pip install -q --disable-pip-version-check "${SMOKE_TOOLS[@]}"
  install_wheel "$spy"
  (cd bindings/python && FAL_REALTIME_EXPECT_INSTALLED="$SITE" \
    timeout 300 "$spy" -m pytest -p no:cacheprovider --timeout 60 -q -ra "${SMOKE_TESTS[@]}")
  echo "smoke on Python $v in $(( $(date +%s) - started )) s"
  summary+=("$v: smoke passed ($interp)")
  ran+=("$v")
done

step "interpreters"
printf '  %s\n' "${summary[@]}"
if [[ " ${ran[*]} " != *" 3.11 "* ]]; then
  echo "python: Python 3.11 did not run (main interpreter $MAIN_VERSION; none found for 3.11)" >&2
  exit 1
fi
echo "python: all checks passed in $(( $(date +%s) - stage_started )) s"
