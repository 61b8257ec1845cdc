"""The blocking style: realtime(), send/recv, iteration, threads, Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Dict, List

import pytest

import fal_realtime
from conftest import mint_token
from fal_realtime import Client


def test_round_trip(client: Client) -> None:
    with client.realtime("owner/echo") as conn:
        conn.send({"prompt": "a cat", "n": 1, "f": 0.5, "ok": True, "none": None, "list": [1, "x"]})
        assert conn.recv() == {"prompt": "a cat", "n": 1, "f": 0.5, "ok": True, "none": None, "list": [1, "x"]}
        st = conn.stats
        assert st.frames_sent == 1 and st.results == 1 and st.connects == 1
    assert conn.closed


def test_many_round_trips_and_stats(client: Client) -> None:
    with client.realtime("owner/echo") as conn:
        for i in range(200):
            conn.send({"i": i})
            assert conn.recv() == {"i": i}
        assert conn.stats.results == 200
        assert conn.stats.last_server_timing is None


def test_timings_messages_are_stats_not_results(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "timings"})
        assert conn.recv() == {"do": "timings"}
        timing = conn.stats.last_server_timing
        assert timing is not None and timing >= 0


def test_iteration_ends_on_clean_close(client: Client) -> None:
    got: List[Dict[str, Any]] = []
    with client.realtime("owner/stream") as conn:
        conn.send({"count": 3, "x": "y"})
        conn.send({"do": "close", "code": 1000})  # not the control app: just streamed back
        for result in conn:
            got.append(result)
            if len(got) == 6:
                conn.close()
    assert [r["index"] for r in got] == [0, 1, 2, 0, 1, 2]


def test_server_close_1000_ends_iteration(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "echo"})
        conn.send({"do": "close", "code": 1000})
        assert list(conn) == [{"do": "echo"}]
        assert conn.recv() is None


def test_timeout_message_ends_iteration_cleanly(timeout_emu: Any) -> None:
    client = timeout_emu.client()
    with client.realtime("owner/echo") as conn:
        conn.send({"a": 1})
        results = list(conn)  # the server closes the idle session after 1 s with TIMEOUT
        assert results == [{"a": 1}]
        assert conn.recv() is None


def test_bytes_round_trip(client: Client) -> None:
    blob = bytes(range(256)) * 4
    with client.realtime("owner/echo") as conn:
        conn.send({"image": blob, "text": "x"})
        out = conn.recv()
        assert out is not None
        assert type(out["image"]) is bytes and out["image"] == blob
        assert type(out["text"]) is str


def test_large_payload_8_mib(client: Client) -> None:
    blob = os.urandom(8 * 1024 * 1024)
    with client.realtime("owner/echo") as conn:
        conn.send({"image": blob})
        out = conn.recv(timeout=30)
        assert out is not None and out["image"] == blob


def test_bytes_are_a_msgpack_bin_and_send_msgpack_sends_as_is(client: Client) -> None:
    pre = fal_realtime.packb({"pre": "encoded"})
    with client.realtime("owner/echo") as conn:
        # send(bytes) encodes the bytes as a msgpack bin, as fal_client does.
        conn.send(pre)
        assert conn.recv(timeout=10) == pre
        conn.send(bytearray(b"ab"))
        assert conn.recv(timeout=10) == b"ab"
        # Pre-encoded msgpack has its own method (exactly one msgpack value).
        conn.send_msgpack(pre)
        assert conn.recv(timeout=10) == {"pre": "encoded"}
        conn.send_msgpack(memoryview(pre))
        assert conn.recv(timeout=10) == {"pre": "encoded"}
        for bad in (b"", b"\xc1", pre + b"\x00", pre[:-1]):
            with pytest.raises(fal_realtime.EncodeError):
                conn.send_msgpack(bad)
        with pytest.raises(fal_realtime.EncodeError):
            conn.send_msgpack("not bytes")  # type: ignore[arg-type]
        assert conn.stats.frames_sent == 4


def test_recv_timeout_raises_and_connection_survives(client: Client) -> None:
    with client.realtime("owner/slow") as conn:
        with pytest.raises(fal_realtime.FalTimeoutError) as ei:
            conn.recv(timeout=0.05)
        assert isinstance(ei.value, TimeoutError)
        conn.send({"late": True})
        assert conn.recv(timeout=10) == {"late": True}


def test_close_is_idempotent_and_send_after_close_fails(client: Client) -> None:
    with client.realtime("owner/echo") as conn:
        conn.close()
        conn.close()
        with pytest.raises(fal_realtime.NotConnectedError):
            conn.send({"x": 1})
        assert conn.recv() is None


def test_threads_send_while_one_receives(client: Client) -> None:
    n_threads, per_thread = 4, 50
    with client.realtime("owner/echo", max_buffering=60) as conn:
        received: List[Dict[str, Any]] = []

        def receiver() -> None:
            for _ in range(n_threads * per_thread):
                r = conn.recv(timeout=20)
                assert r is not None
                received.append(r)

        def sender(t: int) -> None:
            for i in range(per_thread):
                conn.send({"t": t, "i": i})

        rt = threading.Thread(target=receiver)
        rt.start()
        senders = [threading.Thread(target=sender, args=(t,)) for t in range(n_threads)]
        for s in senders:
            s.start()
        for s in senders:
            s.join(30)
        rt.join(30)
        assert not rt.is_alive()
        assert sorted((r["t"], r["i"]) for r in received) == [
            (t, i) for t in range(n_threads) for i in range(per_thread)
        ]
        # Per sender, order is kept.
        for t in range(n_threads):
            assert [r["i"] for r in received if r["t"] == t] == list(range(per_thread))


def test_gil_is_released_while_waiting(client: Client) -> None:
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    try:
        with client.realtime("owner/slow") as conn:
            with pytest.raises(fal_realtime.FalTimeoutError):
                conn.recv(timeout=0.3)
    finally:
        stop.set()
        t.join()
    assert ticks > 20


def test_ctrl_c_interrupts_blocking_recv(client: Client) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    with client.realtime("owner/slow") as conn:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            conn.recv()  # nothing was sent: blocks until interrupted
        assert time.monotonic() - started < 5
        # Still usable afterwards.
        conn.send({"after": "interrupt"})
        assert conn.recv(timeout=10) == {"after": "interrupt"}


def test_custom_encode_and_decode(client: Client) -> None:
    import json

    seen: List[bytes] = []

    def decode(data: bytes) -> Any:
        seen.append(data)
        return {"decoded": fal_realtime.unpackb(data)}

    with client.realtime(
        "owner/control",
        encode_message=lambda m: json.dumps(m),  # text frames: the control app echoes them
        decode_message=decode,
    ) as conn:
        conn.send({"via": "text"})
        # A text frame comes back: default JSON handling, decode_message not called.
        assert conn.recv() == {"via": "text"}
        assert seen == []

    with client.realtime("owner/echo", decode_message=decode) as conn:
        conn.send({"via": "binary"})
        assert conn.recv() == {"decoded": {"via": "binary"}}
        assert len(seen) == 1


def test_decode_message_returning_an_error_frame_is_classified(client: Client) -> None:
    with client.realtime("owner/control", decode_message=fal_realtime.unpackb) as conn:
        conn.send({"do": "error_bin"})
        with pytest.raises(fal_realtime.RealtimeError) as ei:
            conn.recv()
        assert ei.value.error == "INTERNAL_ERROR"


def test_header_auth(client: Client) -> None:
    with client.realtime("owner/echo", use_jwt=False) as conn:
        conn.send({"auth": "header"})
        assert conn.recv() == {"auth": "header"}


def test_sync_token_provider(emu: Any) -> None:
    client = emu.client(key="wrong-key")  # fal's token endpoint is never asked
    calls: List[str] = []

    def provider(app: str) -> str:
        calls.append(app)
        return mint_token(emu, "echo")

    with client.realtime("owner/echo", token_provider=provider) as conn:
        conn.send({"via": "provider"})
        assert conn.recv() == {"via": "provider"}
    assert calls == ["owner/echo/realtime"]


def test_app_id_ending_with_realtime_is_not_doubled(client: Client) -> None:
    with client.realtime("owner/echo/realtime") as conn:
        conn.send({"a": 1})
        assert conn.recv() == {"a": 1}


def test_drop_in_import_compatibility() -> None:
    # What a fal_client user calls exists with the same names and defaults.
    import inspect

    sig = inspect.signature(fal_realtime.realtime)
    assert sig.parameters["use_jwt"].default is True
    assert sig.parameters["path"].default == "/realtime"
    assert sig.parameters["max_buffering"].default is None
    assert sig.parameters["token_expiration"].default == 120
    assert "encode_message" in sig.parameters and "decode_message" in sig.parameters
    e = fal_realtime.RealtimeError("INTERNAL_ERROR", "boom", {"type": "x-fal-error"})
    assert (e.error, e.reason, e.payload, str(e)) == (
        "INTERNAL_ERROR",
        "boom",
        {"type": "x-fal-error"},
        "INTERNAL_ERROR: boom",
    )
    assert isinstance(e, RuntimeError)
