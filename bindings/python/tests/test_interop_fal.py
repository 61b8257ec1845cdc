"""Interop: the same calls against a server built from fal's own realtime template.

The server (tests/interop/reference_server.py) runs under a Python that has the
``fal`` package (``FAL_REFERENCE_PYTHON``, set by scripts/test-python.sh when
``pip install fal`` works here); otherwise these tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator, List

import pytest

import fal_realtime

SERVER = Path(__file__).parent / "interop" / "reference_server.py"


@pytest.fixture(scope="module")
def ref_host() -> Iterator[str]:
    python = os.environ.get("FAL_REFERENCE_PYTHON")
    if not python:
        reason = os.environ.get(
            "FAL_REFERENCE_SKIP_REASON",
            "FAL_REFERENCE_PYTHON is not set (a Python with the `fal` package; scripts/test-python.sh sets it)",
        )
        pytest.skip(f"fal reference server unavailable: {reason}")
    proc = subprocess.Popen(
        [python, str(SERVER)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: List[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "listening on" in line:
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(60)
    m = next((re.search(r"listening on (\S+)", x) for x in lines if "listening on" in x), None)
    if m is None:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the reference server did not start: {lines!r} {err[-2000:]}")
    yield m.group(1)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def ref(ref_host: str) -> fal_realtime.Client:
    return fal_realtime.Client(
        key="any-key", run_host=f"ws://{ref_host}", rest_url=f"http://{ref_host}", allow_insecure_ws=True
    )


def test_sync_round_trips_with_bytes(ref: fal_realtime.Client) -> None:
    with ref.realtime("test/echo") as conn:
        for i in range(20):
            conn.send({"i": i, "image": bytes([i]) * 1000, "prompt": "a cat"})
            assert conn.recv(timeout=10) == {"i": i, "image": bytes([i]) * 1000, "prompt": "a cat"}


def test_large_payload(ref: fal_realtime.Client) -> None:
    blob = os.urandom(4 * 1024 * 1024)
    with ref.realtime("test/echo") as conn:
        conn.send({"image": blob})
        out = conn.recv(timeout=30)
        assert out is not None and out["image"] == blob


def test_header_auth_and_max_buffering(ref: fal_realtime.Client) -> None:
    with ref.realtime("test/echo", use_jwt=False, max_buffering=4) as conn:
        conn.send({"a": 1})
        assert conn.recv(timeout=10) == {"a": 1}


async def test_async(ref: fal_realtime.Client) -> None:
    async with ref.realtime_async("test/echo") as conn:
        for i in range(20):
            await conn.send({"i": i})
            assert await conn.recv(timeout=10) == {"i": i}


def test_callbacks(ref: fal_realtime.Client) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    with ref.connect("test/echo", on_result=results.put) as conn:
        conn.send({"hello": "template"})
        assert results.get(timeout=10) == {"hello": "template"}


def test_server_streaming_then_timeout_ends_cleanly(ref: fal_realtime.Client) -> None:
    with ref.realtime("test/stream") as conn:
        conn.send({"count": 3})
        # The template streams, then sends TIMEOUT and closes: a clean end.
        assert [r["index"] for r in conn] == [0, 1, 2]


def test_idle_timeout_ends_iteration(ref: fal_realtime.Client) -> None:
    with ref.realtime("test/idle") as conn:
        conn.send({"x": 1})
        assert list(conn) == [{"x": 1}]


def test_handler_exception_is_a_realtime_error(ref: fal_realtime.Client) -> None:
    with ref.realtime("test/fail") as conn:
        conn.send({"x": 1})
        with pytest.raises(fal_realtime.RealtimeError) as ei:
            conn.recv(timeout=10)
        assert ei.value.error == "INTERNAL_ERROR"
        assert "boom" in ei.value.reason


def test_handler_exception_reaches_on_error(ref: fal_realtime.Client) -> None:
    errors: "queue.Queue[BaseException]" = queue.Queue()
    with ref.connect("test/fail", on_result=print, on_error=errors.put) as conn:
        conn.send({"x": 1})
        e = errors.get(timeout=10)
        assert isinstance(e, fal_realtime.RealtimeError) and e.error == "INTERNAL_ERROR"


def test_ws_connect_raw(ref: fal_realtime.Client) -> None:
    with ref.ws_connect("test/echo", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"raw": True}))
        out = ws.recv(timeout=10)
        assert isinstance(out, bytes) and fal_realtime.unpackb(out) == {"raw": True}


async def test_many_async_connections(ref: fal_realtime.Client) -> None:
    async def one(k: int) -> None:
        async with ref.realtime_async("test/echo") as conn:
            for i in range(5):
                await conn.send({"k": k, "i": i})
                assert await conn.recv(timeout=20) == {"k": k, "i": i}

    await asyncio.gather(*(one(k) for k in range(20)))
