"""`import fal_realtime as fal_client`: fal_client 1.0.3's names, signatures and
semantics (see "Switching from fal_client" in the README). The side-by-side
run against fal_client itself is test_fal_client_diff.py."""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
from typing import Any, Iterator, List

import pytest

import fal_realtime
import fal_realtime as fal_client
from conftest import KEY, Emulator, start_emulator, stop

# fal_client 1.0.3's realtime signatures: (name, default) after `application`.
REALTIME_PARAMS = [
    ("use_jwt", True),
    ("path", "/realtime"),
    ("max_buffering", None),
    ("token_expiration", 120),
    ("encode_message", None),
    ("decode_message", None),
]
WS_CONNECT_PARAMS = [
    ("use_jwt", True),
    ("path", ""),
    ("max_buffering", None),
    ("token_expiration", 120),
]


def params(fn: Any) -> List[Any]:
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name not in ("self", "application")]


def test_fal_client_module_layout() -> None:
    assert fal_client.client.RealtimeError is fal_realtime.RealtimeError
    assert fal_client.client.RealtimeConnection is fal_realtime.RealtimeConnection
    assert fal_client.client.AsyncRealtimeConnection is fal_realtime.AsyncRealtimeConnection
    assert fal_client.client.SyncClient is fal_client.SyncClient
    assert fal_client.client.AsyncClient is fal_client.AsyncClient
    assert fal_client.client.FalClientHTTPError is fal_client.FalClientHTTPError
    assert fal_client.auth.MissingCredentialsError is fal_realtime.CredentialsError
    assert issubclass(fal_client.FalClientHTTPError, fal_client.FalClientError)
    # Our HTTP and auth errors are fal_client's HTTP errors; their old bases stay.
    for cls in (fal_realtime.AuthError, fal_realtime.HttpError):
        assert issubclass(cls, fal_client.FalClientHTTPError)
        assert issubclass(cls, fal_realtime.FalRealtimeError)
    assert issubclass(fal_realtime.RealtimeError, RuntimeError)
    from fal_realtime.auth import MissingCredentialsError  # noqa: F401
    from fal_realtime.client import AsyncRealtimeConnection, RealtimeConnection, RealtimeError  # noqa: F401


def test_signatures_are_fal_clients() -> None:
    for cls in (fal_client.SyncClient, fal_client.AsyncClient):
        assert params(cls.__init__) == [("key", None), ("default_timeout", 120.0)]
        # fal_client's keyword arguments and defaults first; ours (token_provider) after.
        assert params(cls.realtime)[: len(REALTIME_PARAMS)] == REALTIME_PARAMS
        assert params(cls.ws_connect)[: len(WS_CONNECT_PARAMS)] == WS_CONNECT_PARAMS
    for fn in (fal_client.realtime, fal_client.realtime_async):
        assert params(fn)[: len(REALTIME_PARAMS)] == REALTIME_PARAMS
    for fn in (fal_client.ws_connect, fal_client.ws_connect_async):
        assert params(fn)[: len(WS_CONNECT_PARAMS)] == WS_CONNECT_PARAMS
    e = fal_client.FalClientHTTPError("boom", 502, {"x": "y"}, None, "kind")
    assert (str(e), e.status_code, e.response_headers, e.error_type) == ("boom", 502, {"x": "y"}, "kind")


def test_sync_and_async_clients_are_like_fal_clients() -> None:
    c = fal_client.SyncClient(key="secret-key-value")
    assert "secret-key-value" not in repr(c)
    assert (c.key, c.default_timeout) == ("secret-key-value", 120.0)
    assert c == fal_client.SyncClient(key="secret-key-value") and hash(c) == hash(fal_client.SyncClient("secret-key-value"))
    with pytest.raises(AttributeError):
        c.key = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        fal_client.SyncClient(default_timeout=0)
    assert fal_client.AsyncClient(default_timeout=5).default_timeout == 5.0


@pytest.fixture
def env_emu(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The environment a fal_client program would have, pointed at the local emulator."""
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("FAL_RUN_HOST", f"ws://{emu.host}")
    monkeypatch.setenv("FAL_REST_URL", f"http://{emu.host}")
    monkeypatch.setattr(fal_realtime, "_default_client", None)
    return emu


def test_sync_client_from_the_environment(env_emu: Emulator) -> None:
    client = fal_client.SyncClient()
    with client.realtime("owner/echo", max_buffering=5, token_expiration=60) as conn:
        conn.send({"x": 1})
        assert conn.recv() == {"x": 1}
    with client.ws_connect("owner/echo") as ws:
        ws.send("text")
        assert ws.recv() == "text"


def test_a_rejected_key_is_a_fal_client_http_error(env_emu: Emulator) -> None:
    with pytest.raises(fal_client.FalClientHTTPError) as ei:
        with fal_client.SyncClient(key="wrong-key").realtime("owner/echo"):
            pass
    assert ei.value.status_code == 401
    assert ei.value.response.json()["detail"] == "Unauthorized"
    assert "wrong-key" not in str(ei.value)


async def test_async_client_from_the_environment(env_emu: Emulator) -> None:
    client = fal_client.AsyncClient()
    async with client.realtime("owner/echo") as conn:
        await conn.send({"x": 2})
        assert await conn.recv() == {"x": 2}
    async with client.ws_connect("owner/echo", use_jwt=False) as ws:
        await ws.send(b"\x05")
        assert await ws.recv() == b"\x05"


@pytest.fixture(scope="module")
def id_secret_emu() -> Iterator[Emulator]:
    e = start_emulator("--key", "kid:ksecret")
    yield e
    stop(e)


def test_key_id_and_secret(id_secret_emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY_ID", "kid")
    monkeypatch.setenv("FAL_KEY_SECRET", "ksecret")
    monkeypatch.setenv("FAL_RUN_HOST", f"ws://{id_secret_emu.host}")
    monkeypatch.setenv("FAL_REST_URL", f"http://{id_secret_emu.host}")
    assert fal_client.auth.fetch_credentials() == "kid:ksecret"
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        conn.send({"id": "secret"})
        assert conn.recv() == {"id": "secret"}
    monkeypatch.setenv("FAL_KEY", "plain")
    assert fal_client.auth.fetch_credentials() == "plain"  # FAL_KEY first, as fal_client


def test_missing_credentials_names_the_variables(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_RUN_HOST", f"ws://{emu.host}")
    monkeypatch.setenv("FAL_REST_URL", f"http://{emu.host}")
    with pytest.raises(fal_client.auth.MissingCredentialsError) as ei:
        with fal_client.SyncClient().realtime("owner/echo"):
            pass
    assert "No credentials found. Set FAL_KEY (or FAL_KEY_ID/FAL_KEY_SECRET)" in str(ei.value)
    with pytest.raises(fal_client.auth.MissingCredentialsError):
        fal_client.auth.fetch_credentials()
    monkeypatch.setenv("FAL_KEY_ID", "only-the-id")
    with pytest.raises(fal_client.auth.MissingCredentialsError):
        fal_client.auth.fetch_credentials()


def test_idle_timeout_recv_raises_once_then_ends(timeout_emu: Emulator) -> None:
    with timeout_emu.client().realtime("owner/echo") as conn:
        conn.send({"a": 1})
        assert conn.recv(timeout=10) == {"a": 1}
        with pytest.raises(fal_client.client.RealtimeError) as ei:
            conn.recv(timeout=15)
        e = ei.value
        assert (e.error, e.reason) == ("TIMEOUT", "no inputs, reconnect when needed!")
        assert e.payload == {"type": "x-fal-error", "error": "TIMEOUT", "reason": "no inputs, reconnect when needed!"}
        assert not isinstance(e, fal_realtime.ClosedError)
        assert conn.recv(timeout=5) is None
        assert list(conn) == []
        with pytest.raises(fal_realtime.ClosedError, match="idle timeout"):
            conn.send({"a": 2})


async def test_idle_timeout_async(timeout_emu: Emulator) -> None:
    async with timeout_emu.client().realtime_async("owner/echo") as conn:
        with pytest.raises(fal_realtime.RealtimeError) as ei:
            await conn.recv(timeout=15)
        assert ei.value.error == "TIMEOUT"
        assert await conn.recv(timeout=5) is None
    async with timeout_emu.client().realtime_async("owner/echo") as conn:
        await conn.send({"a": 1})
        assert [r async for r in conn] == [{"a": 1}]  # iteration ends cleanly
        assert await conn.recv(timeout=5) is None


async def test_async_send_bytes_and_send_msgpack(client: fal_realtime.Client) -> None:
    async with client.realtime_async("owner/echo") as conn:
        await conn.send(b"raw")
        assert await conn.recv(timeout=10) == b"raw"
        await conn.send_msgpack(fal_realtime.packb({"pre": 1}))
        assert await conn.recv(timeout=10) == {"pre": 1}
        with pytest.raises(fal_realtime.EncodeError):
            await conn.send_msgpack(b"\xc1")


def test_callback_send_bytes_and_send_msgpack(client: fal_realtime.Client) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    with client.connect("owner/echo", on_result=results.put, throttle_interval=0) as conn:
        conn.send(b"raw")
        assert results.get(timeout=10) == b"raw"
        conn.send_msgpack(fal_realtime.packb({"pre": 2}))
        assert results.get(timeout=10) == {"pre": 2}
        with pytest.raises(fal_realtime.EncodeError):
            conn.send_msgpack(b"")


def test_ws_connect_close_code_reason_and_decode(client: fal_realtime.Client) -> None:
    with client.ws_connect("owner/echo") as ws:
        assert (ws.close_code, ws.close_reason) == (None, None)
        ws.send("héllo")
        assert ws.recv(timeout=10, decode=False) == "héllo".encode()
        ws.send(b"5")
        assert ws.recv(timeout=10, decode=True) == "5"
        ws.send(b"\xff")
        with pytest.raises(UnicodeDecodeError):
            ws.recv(timeout=10, decode=True)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        with pytest.raises(fal_realtime.InvalidArgumentError):
            ws.close(1005)
        with pytest.raises(fal_realtime.InvalidArgumentError):
            ws.close(1000, "x" * 124)
        ws.send("still open")
        assert ws.recv(timeout=10) == "still open"
        ws.close(4000, "bye")
        # The emulator answers with the same code and reason.
        assert (ws.close_code, ws.close_reason) == (4000, "bye")
        ws.close()  # idempotent
    assert ws.close_code == 4000
    with client.ws_connect("owner/echo") as ws:
        pass
    assert (ws.close_code, ws.close_reason) == (1000, "")
    with client.ws_connect("owner/control", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"do": "close", "code": 4321}))
        with pytest.raises(fal_realtime.ClosedError):
            for _ in ws:
                pass
        assert (ws.close_code, ws.close_reason) == (4321, "closing as asked")
    with client.ws_connect("owner/control", path="/realtime") as ws:
        ws.send(fal_realtime.packb({"do": "drop"}))
        with pytest.raises(fal_realtime.ClosedError):
            ws.recv(timeout=10)
        assert (ws.close_code, ws.close_reason) == (1006, "")


async def test_ws_connect_async_close_code_reason_and_decode(client: fal_realtime.Client) -> None:
    async with client.ws_connect_async("owner/echo") as ws:
        assert ws.close_code is None
        await ws.send("t")
        assert await ws.recv(timeout=10, decode=False) == b"t"
        await ws.send(b"5")
        assert await ws.recv(decode=True) == "5"
        with pytest.raises(fal_realtime.InvalidArgumentError):
            await ws.close(999)
        await ws.close(code=3001, reason="done")
        assert (ws.close_code, ws.close_reason) == (3001, "done")
    async with client.ws_connect_async("owner/control", path="/realtime") as ws:
        await ws.send(fal_realtime.packb({"do": "close", "code": 1000}))
        assert [f async for f in ws] == []
        assert ws.close_code == 1000


def test_client_only_on_a_server_side_host(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fal_realtime")
    results: "queue.Queue[Any]" = queue.Queue()
    server = emu.client(server_side=True)
    assert server._native.server_side
    with server.connect("owner/echo", on_result=results.put, client_only=True, throttle_interval=0) as conn:
        for i in range(3):
            conn.send({"i": i})
        st = conn.stats
        assert (st.inputs_dropped_client_only, st.frames_sent, st.connects) == (3, 0, 0)
        assert conn.state == "idle"
        assert st.to_dict()["inputs_dropped_client_only"] == 3
    assert results.empty()
    dropped = [r for r in caplog.records if r.getMessage().startswith("fal-realtime: input of")]
    assert len(dropped) == 3, [r.getMessage() for r in caplog.records]
    # Not server-side: client_only has no effect.
    with emu.client().connect("owner/echo", on_result=results.put, client_only=True, throttle_interval=0) as conn:
        conn.send({"i": 9})
        assert results.get(timeout=10) == {"i": 9}
        assert conn.stats.inputs_dropped_client_only == 0
    # Server-side, not client_only: connects as usual.
    with server.connect("owner/echo", on_result=results.put, throttle_interval=0) as conn:
        conn.send({"i": 10})
        assert results.get(timeout=10) == {"i": 10}


def test_module_level_connect_takes_client_only() -> None:
    assert inspect.signature(fal_realtime.connect).parameters["client_only"].default is False
    assert inspect.signature(fal_realtime.Client).parameters["server_side"].default is False


def test_asyncio_run_of_fal_client_style_code(env_emu: Emulator) -> None:
    async def main() -> Any:
        async with fal_client.realtime_async("owner/echo") as conn:
            await conn.send({"prompt": "a cat"})
            return await conn.recv()

    assert asyncio.run(main()) == {"prompt": "a cat"}
