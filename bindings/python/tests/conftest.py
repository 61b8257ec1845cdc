"""Fixtures: local emulators (plain, with an idle-session timeout, with TLS) and clients.

The emulator binary comes from ``FAL_REALTIME_EMULATOR`` (set by
``scripts/test-python.sh``), else ``target/release/fal-realtime`` of the repository.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

import pytest

import fal_realtime

# scripts/test-python.sh runs the suite against the installed wheel and says
# where it is installed: the tests must not import a source tree.
_EXPECTED_SITE = os.environ.get("FAL_REALTIME_EXPECT_INSTALLED")
if _EXPECTED_SITE:
    _where = Path(fal_realtime.__file__).resolve()
    if not _where.is_relative_to(Path(_EXPECTED_SITE).resolve()):
        raise RuntimeError(f"fal_realtime imported from {_where}, not from the installed wheel in {_EXPECTED_SITE}")

KEY = "test-key"
REPO = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"listening on (https?)://([^\s/]+)")


def emulator_binary() -> Optional[Path]:
    env = os.environ.get("FAL_REALTIME_EMULATOR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO / "target" / "release" / "fal-realtime")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


class Emulator(NamedTuple):
    host: str  # 127.0.0.1:PORT (localhost:PORT with TLS)
    scheme: str  # http or https
    proc: "subprocess.Popen[str]"

    def client(self, **kwargs: object) -> fal_realtime.Client:
        ws = "wss" if self.scheme == "https" else "ws"
        opts: dict = dict(
            key=KEY,
            run_host=f"{ws}://{self.host}",
            rest_url=f"{self.scheme}://{self.host}",
            allow_insecure_ws=True,
        )
        opts.update(kwargs)
        return fal_realtime.Client(**opts)  # type: ignore[arg-type]


def start_emulator(*args: str) -> Emulator:
    binary = emulator_binary()
    if binary is None:
        pytest.skip(
            "the emulator binary is missing: build it with "
            "`cargo build --release -p fal-realtime-emulator` or set FAL_REALTIME_EMULATOR"
        )
    proc = subprocess.Popen(
        [str(binary), "serve", "--port", "0", "--host", "127.0.0.1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: List[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if LISTENING.search(line):
                break

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)
    m = next((LISTENING.search(line) for line in lines if LISTENING.search(line)), None)
    if m is None:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {lines!r}")
    return Emulator(host=m.group(2), scheme=m.group(1), proc=proc)


def stop(emu: Emulator) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()
        emu.proc.wait(10)


def mint_token(emu: Emulator, alias: str, expiration: float = 60) -> str:
    """A token from the emulator's token endpoint (what a custom provider would return)."""
    import json
    import ssl
    import urllib.request

    req = urllib.request.Request(
        f"{emu.scheme}://{emu.host}/tokens/",
        data=json.dumps({"allowed_apps": [alias], "token_expiration": expiration}).encode(),
        headers={"Authorization": f"Key {KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    ctx = ssl._create_unverified_context() if emu.scheme == "https" else None
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        return str(json.loads(resp.read()))


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    e = start_emulator()
    yield e
    stop(e)


@pytest.fixture(scope="session")
def timeout_emu() -> Iterator[Emulator]:
    """Closes sessions idle for 1 s with the server's TIMEOUT message."""
    e = start_emulator("--session-timeout", "1")
    yield e
    stop(e)


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = emulator_binary()
    if binary is None:
        pytest.skip("the emulator binary is missing")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([str(binary), "gen-certs", "--out", str(d)], check=True, capture_output=True, timeout=60)
    return d


@pytest.fixture(scope="session")
def tls_emu(tls_dir: Path) -> Iterator[Emulator]:
    e = start_emulator("--tls-cert", str(tls_dir / "cert.pem"), "--tls-key", str(tls_dir / "key.pem"))
    yield e
    stop(e)


@pytest.fixture
def client(emu: Emulator) -> fal_realtime.Client:
    return emu.client()


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never talk to fal.ai: no credentials or hosts from the environment.
    for var in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_RUN_HOST", "FAL_REST_URL"):
        monkeypatch.delenv(var, raising=False)
