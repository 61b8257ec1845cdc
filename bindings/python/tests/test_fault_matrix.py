"""The fault matrix, Python doors (sync, asyncio, callback, raw WebSocket):
every socket fault of the emulator's control app gives an error of the right
class within a bounded time, later sends are refused (pull styles), and the
callback style recovers on the next send. With ``FAL_RT_MATRIX=path`` each cell
is appended to ``path`` as a JSON line (``scripts/reliability-report.sh``)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import time
from typing import Any, Dict, Type

import msgpack
import pytest

import fal_realtime
from conftest import Emulator

FAULTS: Dict[str, Any] = {
    "server stops answering": ({"do": "silent"}, fal_realtime.FalTimeoutError, 1011),
    "connection reset": ({"do": "reset"}, fal_realtime.ClosedError, 1006),
    "cut mid-frame": ({"do": "cut"}, fal_realtime.ClosedError, 1006),
    "oversized frame": ({"do": "oversized", "size": 2 << 20}, fal_realtime.ClosedError, 1009),
    "abnormal close 4001": ({"do": "close", "code": 4001}, fal_realtime.ClosedError, 4001),
}


def record(door: str, fault: str, outcome: str, started: float) -> None:
    path = os.environ.get("FAL_RT_MATRIX")
    if path:
        ms = int((time.monotonic() - started) * 1000)
        with open(path, "a") as f:
            f.write(json.dumps({"door": door, "fault": fault, "outcome": outcome, "ms": ms}) + "\n")


def outcome(e: BaseException) -> str:
    code = getattr(e, "close_code", None)
    kind = getattr(e, "kind", type(e).__name__)
    return f"{kind} ({code})" if code else str(kind)


def client(emu: Emulator) -> fal_realtime.Client:
    return emu.client(ping_interval=0.2, ping_timeout=0.4, max_message_size=1 << 20, open_timeout=1.5)


def check(e: BaseException, cls: Type[BaseException], code: int) -> None:
    assert isinstance(e, cls), repr(e)
    assert getattr(e, "close_code", None) == code, repr(e)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_sync(emu: Emulator, fault: str) -> None:
    inp, cls, code = FAULTS[fault]
    t = time.monotonic()
    with client(emu).realtime("owner/control") as conn:
        conn.send(inp)
        with pytest.raises(fal_realtime.FalRealtimeError) as e:
            conn.recv(timeout=15)
        with pytest.raises(fal_realtime.ClosedError):
            conn.send({"n": 1})
    record("Python sync", fault, outcome(e.value), t)
    check(e.value, cls, code)


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_async(emu: Emulator, fault: str) -> None:
    inp, cls, code = FAULTS[fault]
    t = time.monotonic()
    async with client(emu).realtime_async("owner/control") as conn:
        await conn.send(inp)
        with pytest.raises(fal_realtime.FalRealtimeError) as e:
            await asyncio.wait_for(conn.recv(), 15)
        with pytest.raises(fal_realtime.ClosedError):
            await conn.send({"n": 1})
    record("Python asyncio", fault, outcome(e.value), t)
    check(e.value, cls, code)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_ws(emu: Emulator, fault: str) -> None:
    inp, cls, code = FAULTS[fault]
    t = time.monotonic()
    with client(emu).ws_connect("owner/control", path="/realtime") as ws:
        ws.send(msgpack.packb(inp))
        with pytest.raises(fal_realtime.FalRealtimeError) as e:
            ws.recv(timeout=15)
        with pytest.raises(fal_realtime.ClosedError):
            ws.send("x")
    record("Python ws", fault, outcome(e.value), t)
    check(e.value, cls, code)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_callback_recovers(emu: Emulator, fault: str) -> None:
    inp, cls, code = FAULTS[fault]
    t = time.monotonic()
    errors: "queue.Queue[BaseException]" = queue.Queue()
    results: "queue.Queue[Any]" = queue.Queue()
    conn = client(emu).connect("owner/control", on_result=results.put, on_error=errors.put, throttle_interval=0)
    try:
        conn.send(inp)
        err = errors.get(timeout=15)
        conn.send({"n": 2})
        assert results.get(timeout=15) == {"n": 2}
        assert conn.stats.connects == 2
    finally:
        conn.close()
    record("Python callback", fault, outcome(err) + ", recovers", t)
    check(err, cls, code)


def test_handshake_stall_times_out(emu: Emulator) -> None:
    t = time.monotonic()
    with pytest.raises(fal_realtime.FalTimeoutError) as e:
        with client(emu).realtime("owner/stall"):
            pass
    record("Python sync", "handshake stalls", outcome(e.value), t)
    t = time.monotonic()
    with pytest.raises(fal_realtime.FalTimeoutError) as e:
        with client(emu).ws_connect("owner/stall", path="/realtime"):
            pass
    record("Python ws", "handshake stalls", outcome(e.value), t)
    errors: "queue.Queue[BaseException]" = queue.Queue()
    conn = client(emu).connect("owner/stall", on_result=lambda r: None, on_error=errors.put)
    try:
        t = time.monotonic()
        conn.send({"n": 1})
        err = errors.get(timeout=15)
        record("Python callback", "handshake stalls", outcome(err), t)
        assert isinstance(err, fal_realtime.FalTimeoutError), repr(err)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_async_handshake_stall_and_late_pongs(emu: Emulator) -> None:
    t = time.monotonic()
    with pytest.raises(fal_realtime.FalTimeoutError) as e:
        async with client(emu).realtime_async("owner/stall"):
            pass
    record("Python asyncio", "handshake stalls", outcome(e.value), t)
    patient = emu.client(ping_interval=0.2, ping_timeout=3.0)
    t = time.monotonic()
    async with patient.realtime_async("owner/control") as conn:
        await conn.send({"do": "pause", "ms": 700})
        assert (await conn.recv(timeout=15)) == {"do": "pause", "ms": 700}
        assert conn.stats.pings_sent >= 2
    record("Python asyncio", "pongs late (within the timeout)", "no error, result delivered", t)


def test_late_pongs_sync(emu: Emulator) -> None:
    patient = emu.client(ping_interval=0.2, ping_timeout=3.0)
    t = time.monotonic()
    with patient.realtime("owner/control") as conn:
        conn.send({"do": "pause", "ms": 700})
        assert conn.recv(timeout=15) == {"do": "pause", "ms": 700}
    record("Python sync", "pongs late (within the timeout)", "no error, result delivered", t)


class Proxy:
    """``fal-realtime proxy`` in front of the emulator, driven through its stdin."""

    def __init__(self, emu: Emulator) -> None:
        import re
        import subprocess

        from conftest import emulator_binary

        binary = emulator_binary()
        assert binary is not None
        self.proc = subprocess.Popen(
            [str(binary), "proxy", "--upstream", emu.host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert m, line
        self.host = m.group(1)

    def do(self, cmd: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().startswith("ok"), cmd

    def client(self) -> fal_realtime.Client:
        return fal_realtime.Client(
            key="test-key",
            run_host=f"ws://{self.host}",
            rest_url=f"http://{self.host}",
            allow_insecure_ws=True,
            ping_interval=0.2,
            ping_timeout=0.4,
        )

    def close(self) -> None:
        try:
            self.do("quit")
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def proxy(emu: Emulator) -> Any:
    p = Proxy(emu)
    yield p
    p.close()


def test_proxy_latency_stall_sync(proxy: Proxy) -> None:
    proxy.do("latency 40 10")
    t = time.monotonic()
    with proxy.client().realtime("owner/echo") as conn:
        for i in range(10):
            conn.send({"i": i})
        assert [conn.recv(timeout=15) for _ in range(10)] == [{"i": i} for i in range(10)]
        record("Python sync", "latency 40 ms ± 10 ms", "10/10 results in order", t)
        proxy.do("latency 0 0")
        t = time.monotonic()
        proxy.do("stall")
        with pytest.raises(fal_realtime.FalTimeoutError) as e:
            conn.recv(timeout=15)
        record("Python sync", "network stall (proxy)", outcome(e.value), t)
        proxy.do("resume")


@pytest.mark.asyncio
async def test_proxy_latency_stall_async(proxy: Proxy) -> None:
    proxy.do("latency 40 10")
    t = time.monotonic()
    async with proxy.client().realtime_async("owner/echo") as conn:
        for i in range(10):
            await conn.send({"i": i})
        assert [await conn.recv(timeout=15) for _ in range(10)] == [{"i": i} for i in range(10)]
        record("Python asyncio", "latency 40 ms ± 10 ms", "10/10 results in order", t)
        proxy.do("latency 0 0")
        t = time.monotonic()
        proxy.do("stall")
        with pytest.raises(fal_realtime.FalTimeoutError) as e:
            await asyncio.wait_for(conn.recv(), 15)
        record("Python asyncio", "network stall (proxy)", outcome(e.value), t)
        proxy.do("resume")


def test_proxy_cut_mid_frame_callback_recovers(proxy: Proxy) -> None:
    errors: "queue.Queue[BaseException]" = queue.Queue()
    results: "queue.Queue[Any]" = queue.Queue()
    conn = proxy.client().connect("owner/echo", on_result=results.put, on_error=errors.put, throttle_interval=0)
    try:
        conn.send({"i": 0})
        assert results.get(timeout=15) == {"i": 0}
        t = time.monotonic()
        proxy.do("cut-after 5")
        conn.send({"i": 1, "pad": "x" * 200})
        err = errors.get(timeout=15)
        assert isinstance(err, fal_realtime.ClosedError), repr(err)
        conn.send({"i": 2})
        assert results.get(timeout=15) == {"i": 2}
        record("Python callback", "cut mid-frame (proxy)", outcome(err) + ", recovers", t)
    finally:
        conn.close()
