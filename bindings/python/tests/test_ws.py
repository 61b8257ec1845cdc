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
