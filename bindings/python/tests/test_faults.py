"""Faults in every Python style: a session that ended refuses sends, keepalive
detects a server that stopped answering, asyncio connections release their
file descriptors at close. Every wait is bounded."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import fal_realtime
from conftest import KEY, Emulator

SILENT = {"do": "silent"}


def keepalive_client(emu: Emulator) -> fal_realtime.Client:
    return emu.client(ping_interval=0.1, ping_timeout=0.2)


def test_sync_send_after_idle_timeout_raises(timeout_emu: Emulator) -> None:
    with timeout_emu.client().realtime("owner/echo") as conn:
        # recv raises the idle TIMEOUT once (as fal_client), then the end is clean.
        with pytest.raises(fal_realtime.RealtimeError) as t:
            conn.recv(timeout=15)
        assert t.value.error == "TIMEOUT"
        assert conn.recv(timeout=15) is None
        with pytest.raises(fal_realtime.ClosedError) as e:
            conn.send({"n": 1})
        assert "idle timeout" in str(e.value)
        assert conn.stats.frames_sent == 0


@pytest.mark.asyncio
async def test_async_send_after_unauthorized_raises(emu: Emulator) -> None:
    async with emu.client().realtime_async("owner/control") as conn:
        await conn.send({"do": "unauthorized"})
        with pytest.raises(fal_realtime.AuthError) as e:
            await conn.recv(timeout=10)
        assert "next send" not in str(e.value)
        with pytest.raises(fal_realtime.ClosedError) as e2:
            await conn.send({"n": 1})
        assert "Unauthorized" in str(e2.value)


def test_sync_keepalive_detects_a_silent_server(emu: Emulator) -> None:
    with keepalive_client(emu).realtime("owner/control") as conn:
        conn.send(SILENT)
        with pytest.raises(fal_realtime.FalTimeoutError) as e:
            conn.recv(timeout=15)
        assert "keepalive" in str(e.value)
        assert conn.stats.pings_sent >= 1
        with pytest.raises(fal_realtime.ClosedError):
            conn.send({"n": 1})


@pytest.mark.asyncio
async def test_async_keepalive_detects_a_silent_server(emu: Emulator) -> None:
    c = keepalive_client(emu)
    async with c.realtime_async("owner/control") as conn:
        await conn.send(SILENT)
        with pytest.raises(fal_realtime.FalTimeoutError):
            await asyncio.wait_for(conn.recv(), 15)
    async with c.ws_connect_async("owner/control", path="/realtime") as ws:
        import msgpack

        await ws.send(msgpack.packb(SILENT))
        with pytest.raises(fal_realtime.FalTimeoutError):
            await asyncio.wait_for(ws.recv(), 15)


@pytest.mark.asyncio
async def test_async_keepalive_pings_while_recv_waits(emu: Emulator) -> None:
    async with emu.client(ping_interval=0.05).realtime_async("owner/echo") as conn:
        with pytest.raises(fal_realtime.FalTimeoutError):
            await conn.recv(timeout=0.6)
        assert conn.stats.pongs_received >= 2, conn.stats


def test_callback_keepalive_reports_and_reconnects(emu: Emulator) -> None:
    errors: "queue.Queue[Any]" = queue.Queue()
    results: "queue.Queue[Any]" = queue.Queue()
    conn = keepalive_client(emu).connect(
        "owner/control", on_result=results.put, on_error=errors.put, throttle_interval=0
    )
    try:
        conn.send(SILENT)
        err = errors.get(timeout=15)
        assert isinstance(err, fal_realtime.FalTimeoutError), err
        conn.send({"n": 2})
        assert results.get(timeout=15) == {"n": 2}
        assert conn.stats.connects == 2
    finally:
        conn.close()


def test_token_life_under_a_second_is_refused(client: fal_realtime.Client) -> None:
    with pytest.raises(fal_realtime.InvalidArgumentError, match="at least 1 s"):
        with client.realtime("owner/echo", token_expiration=0.0):
            pass


def test_keepalive_options_are_checked(emu: Emulator) -> None:
    with pytest.raises(fal_realtime.InvalidArgumentError):
        emu.client(ping_interval=-1.0)
    c = emu.client(ping_interval=None, ping_timeout=None)
    with c.realtime("owner/echo") as conn:
        conn.send({"n": 1})
        assert conn.recv(timeout=10) == {"n": 1}
        assert conn.stats.pings_sent == 0


def test_asyncio_connections_release_fds_at_close(emu: Emulator) -> None:
    """1,000 asyncio connections and 1,000 raw sockets in a row under ulimit -n 256."""
    script = textwrap.dedent(
        f"""
        import asyncio, resource, fal_realtime
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        c = fal_realtime.Client(key={KEY!r}, run_host="ws://{emu.host}",
                                rest_url="http://{emu.host}", allow_insecure_ws=True)
        async def main():
            for i in range(1000):
                async with c.realtime_async("owner/echo") as conn:
                    await conn.send({{"i": i}})
                    assert (await conn.recv(timeout=10)) == {{"i": i}}
            for i in range(1000):
                async with c.ws_connect_async("owner/echo") as ws:
                    await ws.send("x")
                    assert (await ws.recv(timeout=10)) == "x"
            print("ok")
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
