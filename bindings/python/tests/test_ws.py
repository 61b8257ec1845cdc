"""ws_connect / ws_connect_async: raw frames with the realtime URL and auth rules."""

from __future__ import annotations

from typing import Any

import fal_realtime
from fal_realtime import Client


def test_ws_connect_frames(client: Client) -> None:
    # `echo` answers on any path below /{owner}/echo; ws_connect adds no path.
    with client.ws_connect("owner/echo") as ws:
        ws.send(fal_realtime.packb({"bin": b"\x00"}))
        out = ws.recv(timeout=10)
        assert isinstance(out, bytes) and fal_realtime.unpackb(out) == {"bin": b"\x00"}
        ws.send('{"text": true}')
        assert ws.recv(timeout=10) == '{"text": true}'
        assert ws.stats.frames_sent == 2 and ws.stats.frames_received == 2
    assert ws.closed


def test_ws_connect_realtime_path_and_iteration(client: Client) -> None:
    with client.ws_connect("owner/control", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"do": "echo"}))
        ws.send(fal_realtime.packb({"do": "close", "code": 1000}))
        frames = list(ws)
        assert [fal_realtime.unpackb(f) for f in frames if isinstance(f, bytes)] == [{"do": "echo"}]


async def test_ws_connect_async(client: Client) -> None:
    async with client.ws_connect_async("owner/echo", use_jwt=False) as ws:
        await ws.send(fal_realtime.packb([1, 2, 3]))
        out: Any = await ws.recv(timeout=10)
        assert fal_realtime.unpackb(out) == [1, 2, 3]
        await ws.send("text")
        assert await ws.recv(timeout=10) == "text"


def test_ws_connect_abnormal_close(client: Client) -> None:
    import pytest

    with client.ws_connect("owner/control", path="realtime") as ws:
        ws.send(fal_realtime.packb({"do": "close", "code": 4321}))
        with pytest.raises(fal_realtime.ClosedError) as ei:
            ws.recv(timeout=10)
        assert ei.value.code == 4321


def test_ws_recv_after_a_clean_close_raises_connection_closed_ok(client: Client) -> None:
    import pytest

    # Closed by us: recv raises ConnectionClosedOK (as websockets), on every call; iteration ends.
    with client.ws_connect("owner/echo") as ws:
        ws.send("x")
        assert ws.recv(timeout=10) == "x"
        ws.close()
        for _ in range(2):
            with pytest.raises(fal_realtime.ConnectionClosedOK) as ei:
                ws.recv(timeout=10)
            assert ei.value.code == 1000 and isinstance(ei.value, fal_realtime.ClosedError)
        assert list(ws) == []
    # Closed by the server with 1000: iteration ends cleanly, then recv raises.
    with client.ws_connect("owner/control", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"do": "close", "code": 1000}))
        assert list(ws) == []
        with pytest.raises(fal_realtime.ConnectionClosedOK):
            ws.recv(timeout=10)
    # After an abnormal end: the error once, then ClosedError with the code (never ConnectionClosedOK).
    with client.ws_connect("owner/control", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"do": "close", "code": 4321}))
        with pytest.raises(fal_realtime.ClosedError) as first:
            ws.recv(timeout=10)
        with pytest.raises(fal_realtime.ClosedError) as again:
            ws.recv(timeout=10)
        assert not isinstance(first.value, fal_realtime.ConnectionClosedOK)
        assert not isinstance(again.value, fal_realtime.ConnectionClosedOK)
        assert first.value.code == again.value.code == 4321
    # A realtime connection's recv still returns None at a clean end (as fal_client).
    with client.realtime("owner/control") as conn:
        conn.send({"do": "close", "code": 1000})
        assert conn.recv(timeout=10) is None


async def test_ws_async_recv_after_a_clean_close_raises_connection_closed_ok(client: Client) -> None:
    import pytest

    async with client.ws_connect_async("owner/echo") as ws:
        await ws.send("x")
        assert await ws.recv(timeout=10) == "x"
        await ws.close()
        for _ in range(2):
            with pytest.raises(fal_realtime.ConnectionClosedOK) as ei:
                await ws.recv(timeout=10)
            assert ei.value.code == 1000
        assert [f async for f in ws] == []
    async with client.ws_connect_async("owner/control", path="/realtime") as ws:
        await ws.send(fal_realtime.packb({"do": "close", "code": 1000}))
        assert [f async for f in ws] == []
        with pytest.raises(fal_realtime.ConnectionClosedOK):
            await ws.recv(timeout=10)
    async with client.ws_connect_async("owner/control", path="/realtime") as ws:
        await ws.send(fal_realtime.packb({"do": "close", "code": 4321}))
        with pytest.raises(fal_realtime.ClosedError):
            await ws.recv(timeout=10)
        with pytest.raises(fal_realtime.ClosedError) as again:
            await ws.recv(timeout=10)
        assert not isinstance(again.value, fal_realtime.ConnectionClosedOK) and again.value.code == 4321


async def test_ws_async_close_given_up_reports_1006(client: Client) -> None:
    """A close that gave up (the server read nothing for 10 s) shut the socket
    down without a close frame: it says 1006, as ``websockets`` does, and
    ``recv`` raises ``ClosedError``, not ``ConnectionClosedOK`` (before:
    ``close_code`` stayed ``None`` and ``recv`` reported a clean end)."""
    import asyncio

    import pytest

    blob = bytes(1 << 20)
    async with client.ws_connect_async("owner/control", path="/realtime") as ws:
        await ws.send(fal_realtime.packb({"do": "pause", "ms": 60000}))  # the server stops reading
        frame = fal_realtime.packb({"blob": blob})
        sends = [asyncio.ensure_future(ws.send(frame)) for _ in range(64)]
        await asyncio.sleep(0.5)
        assert not all(s.done() for s in sends)  # the socket's buffers are full
        await asyncio.wait_for(ws.close(), 30)
        res = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        assert any(isinstance(r, fal_realtime.ClosedError) for r in res), res
        assert ws.close_code == 1006
        with pytest.raises(fal_realtime.ClosedError) as ei:
            await ws.recv(timeout=10)
        assert not isinstance(ei.value, fal_realtime.ConnectionClosedOK) and ei.value.code == 1006
