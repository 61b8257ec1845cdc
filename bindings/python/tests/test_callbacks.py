"""The callback style: connect(on_result=..., on_error=..., on_state=...)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from typing import Any, Callable, List

import pytest

import fal_realtime
from conftest import mint_token
from fal_realtime import Client


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def relay(conn: Callable[[], Any], last: int, done: threading.Event, r: Any) -> None:
    """From inside a callback: send the next input of a chain, or end it."""
    if r["i"] < last:
        conn().send({"i": r["i"] + 1})
    else:
        done.set()


def test_results_errors_and_states(client: Client) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    states: List[str] = []
    threads: List[threading.Thread] = []

    def on_result(r: Any) -> None:
        threads.append(threading.current_thread())
        results.put(r)

    conn = client.connect("owner/echo", on_result=on_result, on_state=states.append)
    try:
        assert conn.state == "idle"
        conn.send({"hello": "world", "blob": b"\x01\x02"})
        assert results.get(timeout=10) == {"hello": "world", "blob": b"\x01\x02"}
        assert states[:3] == ["authenticating", "connecting", "open"]
        assert conn.state == "open"
        # Callbacks run on a library thread (holding the GIL), not the caller's.
        assert threads[0] is not threading.main_thread()
    finally:
        conn.shutdown()
    assert states[-1] == "closed"
    with pytest.raises(fal_realtime.NotConnectedError):
        conn.send({"after": "shutdown"})


def test_server_error_goes_to_on_error_and_next_send_reconnects(client: Client) -> None:
    errors: "queue.Queue[BaseException]" = queue.Queue()
    results: "queue.Queue[Any]" = queue.Queue()
    with client.connect("owner/control", on_result=results.put, on_error=errors.put) as conn:
        conn.send({"do": "error_bin"})
        e = errors.get(timeout=10)
        assert isinstance(e, fal_realtime.RealtimeError) and e.error == "INTERNAL_ERROR"
        conn.send({"do": "close", "code": 4001})
        e = errors.get(timeout=10)
        assert isinstance(e, fal_realtime.ClosedError) and e.code == 4001
        wait_for(lambda: conn.state == "closed")
        conn.send({"do": "echo", "again": True})
        assert results.get(timeout=10) == {"do": "echo", "again": True}
        assert conn.stats.connects == 2


def test_exception_in_callbacks_is_logged_not_fatal(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    calls = 0

    def on_result(r: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom in callback")
        results.put(r)

    def on_state(s: str) -> None:
        raise RuntimeError("state callback fails too")

    caplog.set_level(logging.ERROR, logger="fal_realtime")
    with client.connect("owner/echo", on_result=on_result, on_state=on_state, throttle_interval=0) as conn:
        conn.send({"n": 1})
        wait_for(lambda: calls == 1)
        conn.send({"n": 2})
        assert results.get(timeout=10) == {"n": 2}
    messages = [r.getMessage() for r in caplog.records if r.name == "fal_realtime"]
    assert any("on_result" in m for m in messages)
    assert any("on_state" in m for m in messages)
    rec = next(r for r in caplog.records if "on_result" in r.getMessage())
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], ValueError)


def test_send_from_inside_a_callback(client: Client) -> None:
    done = threading.Event()
    seen: List[int] = []

    def on_result(r: Any) -> None:
        seen.append(r["i"])
        if r["i"] < 5:
            conn.send({"i": r["i"] + 1})
        else:
            done.set()

    conn = client.connect("owner/echo", on_result=on_result, throttle_interval=0)
    with conn:
        conn.send({"i": 0})
        assert done.wait(10)
    assert seen == [0, 1, 2, 3, 4, 5]


def test_a_library_thread_keeps_its_python_thread_state(client: Client) -> None:
    # Each library thread keeps one Python thread state for its life: a
    # `threading.local` set in one callback is still there in the next on the
    # same thread (a thread state made and dropped per delivery lost it, and
    # cost its creation on every result).
    local = threading.local()
    seen: List[Any] = []
    done = threading.Event()

    def on_result(r: Any) -> None:
        local.n = getattr(local, "n", 0) + 1
        seen.append((threading.get_ident(), local.n))
        relay(lambda: conn, 19, done, r)

    conn = client.connect("owner/echo", on_result=on_result, throttle_interval=0)
    with conn:
        conn.send({"i": 0})
        assert done.wait(10)
    assert len(seen) == 20
    per_thread: dict = {}
    for ident, n in seen:
        per_thread.setdefault(ident, []).append(n)
    for counts in per_thread.values():
        assert counts == list(range(1, len(counts) + 1))


def test_callbacks_run_in_a_copy_of_the_connect_context(client: Client) -> None:
    # As `loop.call_soon` does: each callback runs in a copy of the context of
    # the `connect()` call. A value set before `connect()` is seen; a value a
    # callback sets is seen neither by the next callback nor by another
    # connection's callbacks on the same library thread.
    var: "contextvars.ContextVar[str]" = contextvars.ContextVar("var", default="unset")
    seen_a: List[str] = []
    seen_b: List[str] = []
    done_a, done_b = threading.Event(), threading.Event()
    conns: dict = {}

    def callback(name: str, seen: List[str], done: threading.Event) -> Callable[[Any], None]:
        def on_result(r: Any) -> None:
            seen.append(var.get())
            var.set(f"set in a callback of {name}")
            relay(lambda: conns[name], 9, done, r)

        return on_result

    token = var.set("a at connect")
    conn_a = conns["a"] = client.connect("owner/echo", on_result=callback("a", seen_a, done_a), throttle_interval=0)
    var.reset(token)
    conn_b = conns["b"] = client.connect("owner/echo", on_result=callback("b", seen_b, done_b), throttle_interval=0)
    with conn_a, conn_b:
        conn_a.send({"i": 0})
        conn_b.send({"i": 0})
        assert done_a.wait(10) and done_b.wait(10)
    assert seen_a == ["a at connect"] * 10
    assert seen_b == ["unset"] * 10


def test_throttle_delivers_latest_of_a_burst(client: Client) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    with client.connect("owner/echo", on_result=results.put, throttle_interval=0.2) as conn:
        conn.send({"i": -1})
        assert results.get(timeout=10) == {"i": -1}
        for i in range(20):
            conn.send({"i": i})
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                got.append(results.get(timeout=0.5)["i"])
            except queue.Empty:
                break
        assert got[-1] == 19  # the latest input of the burst always goes out
        assert len(got) < 20  # and the burst was throttled
        assert conn.stats.inputs_replaced > 0


def test_close_then_send_reconnects(client: Client) -> None:
    results: "queue.Queue[Any]" = queue.Queue()
    with client.connect("owner/echo", on_result=results.put) as conn:
        conn.send({"a": 1})
        assert results.get(timeout=10) == {"a": 1}
        conn.close()
        wait_for(lambda: conn.state == "closed")
        conn.send({"a": 2})
        assert results.get(timeout=10) == {"a": 2}
        assert conn.stats.connects == 2


def test_connection_key_reuses_and_replaces_callbacks(client: Client) -> None:
    first: "queue.Queue[Any]" = queue.Queue()
    second: "queue.Queue[Any]" = queue.Queue()
    a = client.connect("owner/echo", on_result=first.put, connection_key="k1")
    b = client.connect("owner/echo", on_result=second.put, connection_key="k1")
    try:
        a.send({"via": "a"})
        assert second.get(timeout=10) == {"via": "a"}
        assert first.empty()
        assert a.stats.connects == b.stats.connects == 1
    finally:
        b.shutdown()


def test_async_token_provider_runs_on_the_callers_loop(emu: Any) -> None:
    client = emu.client(key="wrong-key")
    loops: List[Any] = []
    results: "queue.Queue[Any]" = queue.Queue()

    async def main() -> None:
        async def provider(app: str) -> str:
            loops.append(asyncio.get_running_loop())
            return await asyncio.get_running_loop().run_in_executor(None, mint_token, emu, "echo")

        with client.connect("owner/echo", on_result=results.put, token_provider=provider) as conn:
            conn.send({"x": 1})
            loop = asyncio.get_running_loop()
            r = await loop.run_in_executor(None, lambda: results.get(timeout=10))
            assert r == {"x": 1}
            assert loops and all(lp is loop for lp in loops)

    asyncio.run(main())


def test_failing_token_provider_reaches_on_error(client: Client) -> None:
    errors: "queue.Queue[BaseException]" = queue.Queue()

    def provider(app: str) -> str:
        raise PermissionError("no token for you")

    with client.connect("owner/echo", on_result=print, on_error=errors.put, token_provider=provider) as conn:
        conn.send({"x": 1})
        e = errors.get(timeout=10)
        assert isinstance(e, fal_realtime.TokenProviderError)
        assert "no token for you" in str(e)


def test_unreferenced_connection_is_collected(client: Client) -> None:
    import gc
    import weakref

    results: "queue.Queue[Any]" = queue.Queue()
    conn = client.connect("owner/echo", on_result=lambda r: (results.put(r), conn))
    conn.send({"a": 1})
    assert results.get(timeout=10) == {"a": 1}
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is None
