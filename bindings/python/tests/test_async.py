"""The asyncio style: realtime_async(), await send/recv, async for, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import time
import os
from typing import Any, Dict, Iterator, List

import pytest

import fal_realtime
from conftest import mint_token
from fal_realtime import Client


async def test_round_trip(client: Client) -> None:
    async with client.realtime_async("owner/echo") as conn:
        await conn.send({"prompt": "a cat", "image": b"\x00\x01"})
        assert await conn.recv() == {"prompt": "a cat", "image": b"\x00\x01"}
        assert conn.stats.results == 1
    assert conn.closed


async def test_many_round_trips(client: Client) -> None:
    async with client.realtime_async("owner/echo") as conn:
        for i in range(200):
            await conn.send({"i": i})
            assert await conn.recv() == {"i": i}


async def test_async_for_until_timeout_message(timeout_emu: Any) -> None:
    client = timeout_emu.client()
    async with client.realtime_async("owner/stream") as conn:
        await conn.send({"count": 3})
        got = [r["index"] async for r in conn]  # TIMEOUT after 1 s idle ends it cleanly
        assert got == [0, 1, 2]
        assert await conn.recv() is None


async def test_large_payload_8_mib(client: Client) -> None:
    blob = os.urandom(8 * 1024 * 1024)
    async with client.realtime_async("owner/echo") as conn:
        await conn.send({"image": blob})
        out = await conn.recv(timeout=30)
        assert out is not None and out["image"] == blob


async def test_recv_timeout(client: Client) -> None:
    async with client.realtime_async("owner/slow") as conn:
        with pytest.raises(fal_realtime.FalTimeoutError):
            await conn.recv(timeout=0.05)
        await conn.send({"late": 1})
        assert await conn.recv(timeout=10) == {"late": 1}


async def test_cancelling_an_awaiting_recv_loses_nothing(client: Client) -> None:
    async with client.realtime_async("owner/slow") as conn:
        task = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The connection still works, and results come in order.
        await conn.send({"n": 1})
        await conn.send({"n": 2})
        assert await conn.recv(timeout=10) == {"n": 1}
        assert await conn.recv(timeout=10) == {"n": 2}


async def test_cancellation_racing_results_keeps_order(client: Client) -> None:
    async with client.realtime_async("owner/echo", max_buffering=60) as conn:
        n = 300
        for i in range(n):
            await conn.send({"i": i})
        got: List[int] = []
        deadline = time.monotonic() + 30  # a bound: a lost result would loop forever
        while len(got) < n:
            assert time.monotonic() < deadline, f"results lost: got {len(got)} of {n}"
            # Very short waits: some recvs are cancelled right as a result arrives
            # (Python >= 3.12 then cancels the task after the result was set).
            try:
                r = await asyncio.wait_for(conn.recv(), 0.0005)
            except asyncio.TimeoutError:
                continue
            assert r is not None
            got.append(r["i"])
        assert got == list(range(n))


async def test_many_concurrent_connections(client: Client) -> None:
    async def one(k: int) -> List[Dict[str, Any]]:
        async with client.realtime_async("owner/echo") as conn:
            out = []
            for i in range(20):
                await conn.send({"k": k, "i": i})
                r = await conn.recv(timeout=20)
                assert r is not None
                out.append(r)
            return out

    results = await asyncio.gather(*(one(k) for k in range(50)))
    for k, rs in enumerate(results):
        assert rs == [{"k": k, "i": i} for i in range(20)]


async def test_concurrent_sender_and_receiver_tasks(client: Client) -> None:
    async with client.realtime_async("owner/echo", max_buffering=60) as conn:

        async def send_all() -> None:
            for i in range(100):
                await conn.send({"i": i})

        async def recv_all() -> List[int]:
            out = []
            for _ in range(100):
                r = await conn.recv(timeout=20)
                assert r is not None
                out.append(r["i"])
            return out

        _, got = await asyncio.gather(send_all(), recv_all())
        assert got == list(range(100))


async def test_async_token_provider(emu: Any) -> None:
    client = emu.client(key="wrong-key")
    calls: List[str] = []

    async def provider(app: str) -> str:
        calls.append(app)
        await asyncio.sleep(0)
        return await asyncio.get_running_loop().run_in_executor(None, mint_token, emu, "echo")

    async with client.realtime_async("owner/echo", token_provider=provider) as conn:
        await conn.send({"via": "async provider"})
        assert await conn.recv() == {"via": "async provider"}
    assert calls == ["owner/echo/realtime"]


async def test_server_error_is_raised(client: Client) -> None:
    async with client.realtime_async("owner/fail") as conn:
        await conn.send({"x": 1})
        with pytest.raises(fal_realtime.RealtimeError) as ei:
            await conn.recv()
        assert ei.value.error == "INTERNAL_ERROR"
        assert "boom" in ei.value.reason


async def test_cancelling_connect(emu: Any) -> None:
    client = emu.client()
    task = asyncio.ensure_future(client.realtime_async("owner/echo").__aenter__())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stats_while_a_large_send_and_a_recv_are_pending(client: Client) -> None:
    blob = os.urandom(8 * 1024 * 1024)
    async with client.realtime_async("owner/echo") as conn:
        receiving = asyncio.ensure_future(conn.recv(timeout=30))
        sending = asyncio.ensure_future(conn.send({"image": blob}))
        await asyncio.sleep(0)
        for _ in range(5):
            assert conn.stats.frames_sent in (0, 1)  # never blocks the event loop
            await asyncio.sleep(0)
        await sending
        out = await receiving
        assert out is not None and out["image"] == blob
        assert conn.stats.frames_sent == 1 and conn.stats.results == 1


@contextlib.contextmanager
def heartbeats_armed() -> Iterator[List[float]]:
    """The delays of the keepalive heartbeats the running loop arms meanwhile."""
    loop = asyncio.get_running_loop()
    armed: List[float] = []
    real = loop.call_later

    def counting(delay: float, callback: Any, *args: Any, **kw: Any) -> Any:
        if getattr(callback, "__name__", "") == "_heartbeat":
            armed.append(delay)
        return real(delay, callback, *args, **kw)

    loop.call_later = counting  # type: ignore[method-assign]
    try:
        yield armed
    finally:
        del loop.call_later


async def test_without_keepalive_a_waiting_recv_still_runs_timers(emu: Any) -> None:
    """With keepalive off, a recv that waits still lets the connection's
    timers run now and then (an ending session's close handshake has a
    deadline the event loop would not wake it for)."""
    client = emu.client(ping_interval=None, ping_timeout=None)
    with heartbeats_armed() as armed:
        async with client.realtime_async("owner/echo") as conn:
            waiting = asyncio.ensure_future(conn.recv(timeout=10))
            await asyncio.sleep(0)  # the recv waits
            await conn.send({"i": 1})
            assert await waiting == {"i": 1}
    assert armed and all(0 < d <= 1.0 for d in armed), armed


async def test_close_while_another_task_awaits_recv(client: Client) -> None:
    async with client.realtime_async("owner/slow") as conn:
        waiting = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0.05)
        await conn.close()
        # The pending recv ends with the server's close reply: a clean end.
        assert await asyncio.wait_for(waiting, 10) is None


async def test_close_sends_the_inputs_queued_before_it_first(client: Client) -> None:
    """Sends queued behind a busy socket when ``close()`` is called go out
    before its close frame (they used to fail as closed: the close took the
    socket ahead of the sends not yet polled)."""
    blob = os.urandom(1 << 20)
    n = 16
    async with client.realtime_async("owner/echo", max_buffering=n) as conn:

        async def read_all() -> None:
            while await conn.recv(timeout=30) is not None:
                pass

        reader = asyncio.ensure_future(read_all())
        sends = [asyncio.ensure_future(conn.send({"i": i, "blob": blob})) for i in range(n)]
        await asyncio.sleep(0)  # each send task ran once: the first went out, others wait
        assert not all(s.done() for s in sends)  # the case under test: sends queued
        await asyncio.wait_for(conn.close(), 30)
        assert await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 30) == [None] * n
        await asyncio.wait_for(reader, 30)
        assert conn.stats.frames_sent == n


async def test_close_fails_the_queued_sends_a_silent_server_never_reads(client: Client) -> None:
    """When the server reads nothing more, ``close()`` gives up on the queued
    sends after its flush bound (10 s) instead of waiting for ever, and each
    one not sent raises ``ClosedError`` saying so: none is lost silently."""
    blob = bytes(1 << 20)
    async with client.realtime_async("owner/control") as conn:
        await conn.send({"do": "pause", "ms": 60000})  # the server stops reading
        sends = [asyncio.ensure_future(conn.send({"i": i, "blob": blob})) for i in range(64)]
        await asyncio.sleep(0.5)
        assert not all(s.done() for s in sends)  # the socket's buffers are full
        await asyncio.wait_for(conn.close(), 30)
        res = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        unsent = [r for r in res if r is not None]
        assert unsent, res
        for r in unsent:
            assert isinstance(r, fal_realtime.ClosedError), r
            assert "not sent" in str(r) and "10 s" in str(r), r
        assert conn.stats.frames_sent == 1 + res.count(None)


async def test_a_close_given_up_ends_the_connection_and_outlives_its_cancelled_awaiter(
    client: Client,
) -> None:
    """A ``close()`` whose awaiter is cancelled goes on (before, its sends lost
    their bound and a second ``close()`` returned at once); a second
    ``close()`` waits for the same end. Given up on a server that reads
    nothing, it shuts the connection down: a pending ``recv`` ends then (before,
    it waited for the server), and no send partly written can finish later."""
    blob = bytes(1 << 20)
    async with client.realtime_async("owner/control") as conn:
        await conn.send({"do": "pause", "ms": 60000})  # the server stops reading
        recv = asyncio.ensure_future(conn.recv(timeout=60))
        sends = [asyncio.ensure_future(conn.send({"i": i, "blob": blob})) for i in range(64)]
        await asyncio.sleep(0.5)
        assert not all(s.done() for s in sends)  # the socket's buffers are full
        first = asyncio.ensure_future(conn.close())
        await asyncio.sleep(0.2)
        first.cancel()
        started = time.monotonic()
        await asyncio.wait_for(conn.close(), 30)  # waits for the flush bound
        assert time.monotonic() - started > 5, "the second close waited for the first's end"
        res = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        assert any(r is not None for r in res), res
        for r in res:
            assert r is None or (isinstance(r, fal_realtime.ClosedError) and "not sent" in str(r)), r
        assert conn.stats.frames_sent == 1 + res.count(None)
        with contextlib.suppress(fal_realtime.FalRealtimeError):
            assert await asyncio.wait_for(recv, 5) is None


async def test_sends_waiting_on_a_full_socket_do_not_spin_the_event_loop(client: Client) -> None:
    """While sends wait for a socket the server no longer reads (it is blocked
    writing echoes nobody reads), the event loop sleeps: the socket's reader is
    not kept registered for data no operation wants (before, every loop
    iteration woke the pump for it: a busy loop at 100 % CPU)."""
    loop = asyncio.get_running_loop()
    selector = getattr(loop, "_selector", None)
    if selector is None:
        pytest.skip("counts the selector calls of asyncio's own event loop")
    blob = bytes(1 << 20)
    n = 48
    async with client.realtime_async("owner/echo", max_buffering=n) as conn:
        first = asyncio.ensure_future(conn.recv(timeout=30))
        await asyncio.sleep(0)  # a recv waits: the socket's reader is registered
        await conn.send({"i": -1})
        assert await first == {"i": -1}
        sends = [asyncio.ensure_future(conn.send({"i": i, "blob": blob})) for i in range(n)]
        await asyncio.sleep(1.0)  # echoes fill the buffers; both sides wait to write
        assert not all(s.done() for s in sends)
        calls = 0
        select = selector.select

        def counting(timeout: Any = None) -> Any:
            nonlocal calls
            calls += 1
            return select(timeout)

        selector.select = counting
        try:
            await asyncio.sleep(0.5)
        finally:
            del selector.select
        assert calls < 50, f"{calls} event loop iterations in 0.5 s with nothing to do"
        for _ in range(n):  # reading unblocks the server, then the sends
            assert (await conn.recv(timeout=30))["blob"] == blob
        assert await asyncio.wait_for(asyncio.gather(*sends), 30) == [None] * n


async def test_recv_cancelled_after_its_result_arrived_gives_it_back() -> None:
    """The race behind the test above, made deterministic: the result is set
    on the future a recv awaits, and the task is cancelled before it resumes
    (what ``wait_for`` does on Python >= 3.12 when both happen together)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    class FakeNative:
        def __init__(self) -> None:
            self.put: List[Any] = []

        def recv(self) -> Any:
            return (False, fut)

        def _putback(self, f: Any) -> None:
            self.put.append(f.result())

    native = FakeNative()
    task = asyncio.ensure_future(fal_realtime._recv(native, None))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the task now awaits fut
    fut.set_result({"i": 1})
    task.cancel()  # before the task resumed
    with pytest.raises(asyncio.CancelledError):
        await task
    assert native.put == [{"i": 1}], "the result goes back to the connection for the next recv"


async def test_a_result_given_back_comes_first(client: Client) -> None:
    async with client.realtime_async("owner/echo") as conn:
        native = conn._c  # the native connection
        ready, fut = native.recv()  # nothing sent yet: a pending future
        assert not ready
        await conn.send({"i": 1})
        await asyncio.wait_for(asyncio.wait([fut]), 30)  # done, result not taken by anyone
        await conn.send({"i": 2})
        native._putback(fut)
        assert await conn.recv(timeout=30) == {"i": 1}
        assert await conn.recv(timeout=30) == {"i": 2}


def _proc_count(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _runtime_fds() -> int:
    """Descriptors a tokio runtime holds (its epoll instances and eventfd)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += target in ("anon_inode:[eventpoll]", "anon_inode:[eventfd]")
    return n


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_connections_of_one_loop_share_its_runtime(client: Client) -> None:
    """Each asyncio connection costs its socket only: the loop's connections
    share one runtime (made with the loop's first connection), and an open
    parks no thread of its own."""
    async with client.realtime_async("owner/echo") as first:
        await first.send({"i": -1})
        assert await first.recv() == {"i": -1}
        runtime_fds = _runtime_fds()
        threads = _proc_count("Threads")
        n = 20
        cms = [client.realtime_async("owner/echo") for _ in range(n)]
        conns = await asyncio.gather(*(cm.__aenter__() for cm in cms))
        try:
            assert _runtime_fds() <= runtime_fds  # no runtime per connection
            assert _proc_count("Threads") - threads <= 2  # no thread per open
            for i, c in enumerate(conns):
                await c.send({"i": i})
            for i, c in enumerate(conns):
                assert await c.recv(timeout=10) == {"i": i}
        finally:
            for cm in cms:
                await cm.__aexit__(None, None, None)


async def test_two_event_loops_at_once(client: Client) -> None:
    """A loop in another thread gets its own runtime; both run at the same time."""

    async def round_trips(tag: str) -> List[Any]:
        out = []
        async with client.realtime_async("owner/echo") as conn:
            for i in range(50):
                await conn.send({"tag": tag, "i": i})
                out.append(await conn.recv(timeout=10))
        return out

    other = asyncio.get_running_loop().run_in_executor(None, asyncio.run, round_trips("thread"))
    here = await round_trips("main")
    there = await asyncio.wait_for(other, 30)
    assert here == [{"tag": "main", "i": i} for i in range(50)]
    assert there == [{"tag": "thread", "i": i} for i in range(50)]


def test_uvloop(emu: Any) -> None:
    """The README promises uvloop: connections, a cancelled recv, a close."""
    uvloop = pytest.importorskip("uvloop")
    client = emu.client()

    async def main() -> List[Any]:
        out = []
        cms = [client.realtime_async("owner/echo") for _ in range(3)]
        conns = await asyncio.gather(*(cm.__aenter__() for cm in cms))
        try:
            for i, c in enumerate(conns):
                await c.send({"i": i})
                out.append(await c.recv(timeout=10))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conns[0].recv(), 0.05)
            await conns[0].send({"i": "after"})
            out.append(await conns[0].recv(timeout=10))
        finally:
            for cm in cms:
                await cm.__aexit__(None, None, None)
        return out

    got = uvloop.run(main())
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": "after"}]


async def test_results_that_arrive_before_recv_are_read_ahead_in_order(client: Client) -> None:
    """Results the server streams while no recv waits are read as they come
    (at most a bounded read-ahead; the rest stays in the kernel), the loop
    does not spin on the readable socket meanwhile, and later recvs get every
    result in order."""
    loop = asyncio.get_running_loop()
    selector = getattr(loop, "_selector", None)
    selects = [0]
    if selector is not None:
        real = selector.select

        def counting(timeout: Any = None) -> Any:
            selects[0] += 1
            return real(timeout)

        selector.select = counting
    try:
        async with client.realtime_async("owner/stream") as conn:
            await conn.send({"count": 300})
            selects[0] = 0
            await asyncio.sleep(0.5)  # nothing awaits recv
            if selector is not None:
                # A loop that spun on the readable socket would select thousands of times.
                assert selects[0] < 200, selects[0]
            got = [(await conn.recv(timeout=10))["index"] for _ in range(300)]
            assert got == list(range(300))
    finally:
        if selector is not None:
            selector.select = real


async def test_keepalive_timer_is_not_rearmed_per_message(emu: Any) -> None:
    """While recvs keep coming, one keepalive timer serves them (not a
    call_later and a cancel per message)."""
    client = emu.client()
    with heartbeats_armed() as armed:
        async with client.realtime_async("owner/echo") as conn:
            for i in range(100):
                waiting = asyncio.ensure_future(conn.recv(timeout=10))
                await asyncio.sleep(0)  # the recv waits (and arms the timer)
                await conn.send({"i": i})
                assert await waiting == {"i": i}
                await asyncio.sleep(0.001)  # the next result arrives before its recv
                await conn.send({"j": i})
                await asyncio.sleep(0.001)
                assert await conn.recv(timeout=10) == {"j": i}
    assert 1 <= len(armed) <= 3, armed
