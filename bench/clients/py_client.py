#!/usr/bin/env python3
"""Python clients of the benchmark: our wheel (``fal_realtime``) and ``fal_client``.

Speaks the harness's one command line (see bench/src/lib.rs) plus
``--impl ours|fal_client`` and ``--style sync|async|callback``, does the same
work as the Rust clients (send ``{"request_id", "data"}``, wait for the echo,
check its ``request_id``) and prints one JSON line.

``--impl floor`` is no client at all: an in-process echo (``msgpack`` encodes
the input and decodes the copy) driven by the same loops, so its numbers are
the Python work every client of these loops does per message, with no I/O:
the bound for the Python rows of the report.

``fal_client`` is pointed at the local server the honest way: ``FAL_RUN_HOST``
(it always builds ``wss://`` URLs, so the server runs TLS and the test CA is
trusted with ``SSL_CERT_FILE``), ``use_jwt=False`` for the round-trip
workloads, and for the cold start (token fetch included) its REST base URL
constant pointed at the emulator's token endpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import threading
import time
from collections import deque

SMALL = "".join(chr(ord("a") + i % 26) for i in range(64))


def large_bytes() -> bytes:
    return bytes(range(256)) * 1024  # 256 KiB


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--impl", choices=["ours", "fal_client", "floor"], default="ours")
    p.add_argument("--style", choices=["sync", "async", "callback"], default="sync")
    p.add_argument("--host", default="127.0.0.1:8080")
    p.add_argument("--scheme", choices=["ws", "wss"], default="ws")
    p.add_argument("--ca", default=None)
    p.add_argument("--app", default="me/echo")
    p.add_argument("--key", default="test-key")
    p.add_argument("--auth", choices=["jwt", "header"], default="header")
    p.add_argument("--payload", choices=["small", "large"], default="small")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=3000)
    p.add_argument("--workload", choices=["seq", "pipe", "cold", "fanout"], default="seq")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--label", default="")
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=30.0)
    return p.parse_args(argv)


# ----------------------------------------------------------------- measuring


def proc_status_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def summary(ns):
    if not ns:
        return {"n": 0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "mean": 0, "min": 0, "max": 0}
    v = sorted(ns)
    n = len(v)

    def pct(p):
        rank = min(max(math.ceil(p / 100.0 * n), 1), n)
        return v[rank - 1] / 1000.0

    return {
        "n": n,
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p999": pct(99.9),
        "mean": sum(v) / n / 1000.0,
        "min": v[0] / 1000.0,
        "max": v[-1] / 1000.0,
    }


class Phase:
    def __init__(self):
        self.wall = time.perf_counter()
        self.cpu = cpu_seconds()

    def end(self):
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def report(a, client, samples, wall, cpu, first_us=None, extra=None):
    n = max(len(samples), 1)
    out = {
        "client": client,
        "label": a.label,
        "workload": a.workload,
        "payload": a.payload,
        "scheme": a.scheme,
        "latency_us": summary(samples),
        "throughput_msgs_s": (len(samples) / wall) if wall > 0 else 0.0,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_msg": cpu * 1e6 / n,
        "peak_rss_kib": proc_status_kib("VmHWM"),
    }
    if first_us is not None:
        out["first_us"] = first_us
    if extra:
        out["extra"] = extra
    print(json.dumps(out), flush=True)


def check(res, expect):
    if not isinstance(res, dict) or res.get("request_id") != expect:
        got = res.get("request_id") if isinstance(res, dict) else type(res).__name__
        raise RuntimeError(f"expected {expect}, got {got!r}")


# ----------------------------------------------------------------- clients


def ours_client(a):
    import fal_realtime

    if a.scheme == "ws":
        return fal_realtime.Client(
            key=a.key,
            run_host=f"ws://{a.host}",
            rest_url=f"http://{a.host}",
            allow_insecure_ws=True,
        )
    return fal_realtime.Client(
        key=a.key, run_host=a.host, rest_url=f"https://{a.host}", ca_file=a.ca
    )


def fal_client_module(a):
    # FAL_RUN_HOST is read when fal_client is imported; the harness sets it.
    if os.environ.get("FAL_RUN_HOST") != a.host:
        raise SystemExit("fal_client: set FAL_RUN_HOST=host:port before starting (read at import)")
    if a.scheme != "wss":
        raise SystemExit("fal_client always builds wss:// URLs: use --scheme wss")
    import fal_client
    import fal_client.client as fc

    # The token endpoint's base URL is a module constant; point it at the local
    # server (only the cold start fetches tokens).
    fc.REST_URL = f"https://{a.host}"
    return fal_client


class FloorConn:
    """``--impl floor``: the echo server in-process, no socket, no library.
    ``send`` encodes with msgpack (the C extension ``fal_client`` uses) and
    keeps the bytes; ``recv`` decodes the oldest. Sync and async methods."""

    def __init__(self):
        import msgpack

        self._pack, self._unpack = msgpack.packb, msgpack.unpackb
        self._q = deque()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None

    def send(self, arguments):
        self._q.append(self._pack(arguments))

    def recv(self):
        return self._unpack(self._q.popleft())


class AsyncFloorConn(FloorConn):
    async def send(self, arguments):
        self._q.append(self._pack(arguments))

    async def recv(self):
        return self._unpack(self._q.popleft())


def sync_conn(a):
    """A context manager yielding a blocking connection with send(dict) / recv()."""
    use_jwt = a.auth == "jwt"
    if a.impl == "floor":
        return FloorConn()
    if a.impl == "ours":
        return ours_client(a).realtime(a.app, use_jwt=use_jwt)
    fal_client = fal_client_module(a)
    return fal_client.SyncClient(key=a.key).realtime(a.app, use_jwt=use_jwt)


def async_conn(a):
    use_jwt = a.auth == "jwt"
    if a.impl == "floor":
        return AsyncFloorConn()
    if a.impl == "ours":
        return ours_client(a).realtime_async(a.app, use_jwt=use_jwt)
    fal_client = fal_client_module(a)
    return fal_client.AsyncClient(key=a.key).realtime(a.app, use_jwt=use_jwt)


def make_input(a, data):
    def inp(i):
        return {"request_id": i, "data": data}

    return inp


# ----------------------------------------------------------------- workloads


def run_sync(a, data, name):
    inp = make_input(a, data)
    total = a.warmup + a.n
    samples = []
    if a.workload == "cold":
        return cold_sync(a, inp, name)
    with sync_conn(a) as conn:
        send, recv = conn.send, conn.recv
        clock = time.perf_counter_ns
        phase = Phase()
        if a.workload == "seq":
            for i in range(total):
                if i == a.warmup:
                    phase = Phase()
                rid = f"r{i}"
                t = clock()
                send(inp(rid))
                check(recv(), rid)
                if i >= a.warmup:
                    samples.append(clock() - t)
        else:
            sent_at = deque()
            nxt = 0
            while nxt < total and nxt < a.window:
                sent_at.append(clock())
                send(inp(f"r{nxt}"))
                nxt += 1
            for received in range(total):
                if received == a.warmup:
                    phase = Phase()
                check(recv(), f"r{received}")
                t = sent_at.popleft()
                if received >= a.warmup:
                    samples.append(clock() - t)
                if nxt < total:
                    sent_at.append(clock())
                    send(inp(f"r{nxt}"))
                    nxt += 1
        wall, cpu = phase.end()
    report(a, name, samples, wall, cpu)


def cold_sync(a, inp, name):
    samples = []
    phase = Phase()
    for i in range(a.n):
        rid = f"cold{i}"
        t = time.perf_counter_ns()
        with sync_conn(a) as conn:
            conn.send(inp(rid))
            check(conn.recv(), rid)
            samples.append(time.perf_counter_ns() - t)
    wall, cpu = phase.end()
    report(a, name, samples, wall, cpu, first_us=samples[0] / 1000.0)


async def run_async(a, data, name):
    inp = make_input(a, data)
    total = a.warmup + a.n
    samples = []
    clock = time.perf_counter_ns
    if a.workload == "cold":
        phase = Phase()
        for i in range(a.n):
            rid = f"cold{i}"
            t = clock()
            async with async_conn(a) as conn:
                await conn.send(inp(rid))
                check(await conn.recv(), rid)
                samples.append(clock() - t)
        wall, cpu = phase.end()
        report(a, name, samples, wall, cpu, first_us=samples[0] / 1000.0)
        return
    async with async_conn(a) as conn:
        send, recv = conn.send, conn.recv
        phase = Phase()
        if a.workload == "seq":
            for i in range(total):
                if i == a.warmup:
                    phase = Phase()
                rid = f"r{i}"
                t = clock()
                await send(inp(rid))
                check(await recv(), rid)
                if i >= a.warmup:
                    samples.append(clock() - t)
        else:
            sent_at = deque()
            nxt = 0
            while nxt < total and nxt < a.window:
                sent_at.append(clock())
                await send(inp(f"r{nxt}"))
                nxt += 1
            for received in range(total):
                if received == a.warmup:
                    phase = Phase()
                check(await recv(), f"r{received}")
                t = sent_at.popleft()
                if received >= a.warmup:
                    samples.append(clock() - t)
                if nxt < total:
                    sent_at.append(clock())
                    await send(inp(f"r{nxt}"))
                    nxt += 1
        wall, cpu = phase.end()
    report(a, name, samples, wall, cpu)


def run_callback(a, data, name):
    """Our callback style: results arrive on a library thread; the next input
    is sent from inside the callback (the zero-hop way to drive it)."""
    if a.impl != "ours":
        raise SystemExit("fal_client has no callback style")
    inp = make_input(a, data)
    use_jwt = a.auth == "jwt"
    clock = time.perf_counter_ns
    if a.workload == "cold":
        samples = []
        phase = Phase()
        for i in range(a.n):
            rid = f"cold{i}"
            got = []
            ev = threading.Event()

            def on_result(res, got=got, ev=ev):
                got.append(res)
                ev.set()

            def on_error(err, got=got, ev=ev):
                got.append(err)
                ev.set()

            client = ours_client(a)
            t = clock()
            conn = client.connect(
                a.app, on_result=on_result, on_error=on_error, throttle_interval=0, use_jwt=use_jwt
            )
            conn.send(inp(rid))
            if not ev.wait(30):
                raise RuntimeError("no result within 30 s")
            d = clock() - t
            check(got[0], rid)
            samples.append(d)
            conn.shutdown()
        wall, cpu = phase.end()
        report(a, name, samples, wall, cpu, first_us=samples[0] / 1000.0)
        return

    window = a.window if a.workload == "pipe" else 1
    total = a.warmup + a.n
    st = {"opened": False, "next": 0, "received": 0, "phase": None, "error": None}
    sent_at = deque()
    samples = []
    done = threading.Event()
    lock = threading.Lock()
    holder = {}

    def send_next():
        i = st["next"]
        sent_at.append(clock())
        holder["conn"].send(inp(f"r{i}"))
        st["next"] = i + 1

    def on_result(res):
        now = clock()
        try:
            with lock:
                if not st["opened"]:
                    check(res, "open")
                    st["opened"] = True
                    if a.warmup == 0:
                        st["phase"] = Phase()
                    while st["next"] < total and st["next"] < window:
                        send_next()
                    return
                r = st["received"]
                check(res, f"r{r}")
                t = sent_at.popleft()
                if r >= a.warmup:
                    samples.append(now - t)
                r += 1
                st["received"] = r
                if r == a.warmup:
                    st["phase"] = Phase()
                if r == total:
                    done.set()
                    return
                if st["next"] < total:
                    send_next()
        except Exception as e:  # noqa: BLE001 - reported below
            st["error"] = e
            done.set()

    def on_error(err):
        st["error"] = err
        done.set()

    conn = ours_client(a).connect(
        a.app, on_result=on_result, on_error=on_error, throttle_interval=0, use_jwt=use_jwt
    )
    holder["conn"] = conn
    with lock:
        conn.send(inp("open"))
    if not done.wait(600):
        raise RuntimeError("timed out")
    wall, cpu = st["phase"].end() if st["phase"] else (0.0, 0.0)
    conn.shutdown()
    if st["error"] is not None:
        raise RuntimeError(str(st["error"]))
    report(a, name, samples, wall, cpu)


async def run_fanout(a, data, name):
    """Fan-out, asyncio style: one task per connection, each sending every 1/rate s."""
    import asyncio

    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # thousands of sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    inp = make_input(a, data)
    idle_only = a.rate <= 0 or a.duration <= 0  # open, measure the idle memory, stop
    period = 1.0 / a.rate if not idle_only else 0.0
    conns = []
    stack = []

    async def open_one(i):
        cm = async_conn(a)
        conn = await cm.__aenter__()
        await conn.send(inp(f"c{i}-open"))
        check(await conn.recv(), f"c{i}-open")
        return cm, conn

    t_open = time.perf_counter()
    cm, conn = await open_one(0)
    stack.append(cm)
    conns.append(conn)
    await asyncio.sleep(0.5)
    rss_one = proc_status_kib("VmRSS")
    i = 1
    while i < a.conns:
        hi = min(i + 100, a.conns)
        opened = await asyncio.gather(*(open_one(k) for k in range(i, hi)))
        for cm, conn in opened:
            stack.append(cm)
            conns.append(conn)
        i = hi
    open_s = time.perf_counter() - t_open
    await asyncio.sleep(2)
    rss_idle = proc_status_kib("VmRSS")

    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    end = t0 + a.duration
    errors = 0

    async def load(idx, conn):
        out = []
        k = 0
        nxt = t0 + period * idx / len(conns)
        while nxt < end:
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            rid = f"c{idx}-{k}"
            k += 1
            t = time.perf_counter_ns()
            await conn.send(inp(rid))
            check(await conn.recv(), rid)
            out.append(time.perf_counter_ns() - t)
            nxt += period
            now = loop.time()
            if nxt < now:  # missed ticks: delay, as the Rust side does
                nxt = now
        return out

    phase = Phase()
    if idle_only:
        results = []
    else:
        results = await asyncio.gather(*(load(k, c) for k, c in enumerate(conns)), return_exceptions=True)
    wall, cpu = phase.end()
    samples = []
    for r in results:
        if isinstance(r, BaseException):
            errors += 1
        else:
            samples.extend(r)
    for cm in stack:
        try:
            await cm.__aexit__(None, None, None)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
    msgs = max(len(samples), 1)
    extra = {
        "conns": a.conns,
        "rate_hz": a.rate,
        "duration_s": a.duration,
        "messages": len(samples),
        "expected_messages": int(a.conns * a.rate * a.duration),
        "errors": errors,
        "cpu_s_per_1000_msgs": cpu * 1000.0 / msgs,
        "rss_one_conn_kib": rss_one,
        "rss_idle_kib": rss_idle,
        "rss_per_idle_conn_kib": max(rss_idle - rss_one, 0) / max(a.conns - 1, 1),
        "open_s": open_s,
    }
    report(a, name, samples, wall, cpu, extra=extra)


def main(argv=None):
    a = parse_args(argv)
    data = SMALL if a.payload == "small" else large_bytes()
    prefix = {"ours": "py", "floor": "py-floor"}.get(a.impl, "fal_client")
    name = f"{prefix}-{a.style}"
    try:
        # asyncio (and with it ssl) is imported only where it is used: it alone
        # adds ~11 MiB to a Python process, which the peak-RSS comparison would count.
        if a.workload == "fanout":
            import asyncio

            asyncio.run(run_fanout(a, SMALL, f"fanout-{name}"))
        elif a.style == "sync":
            run_sync(a, data, name)
        elif a.style == "async":
            import asyncio

            asyncio.run(run_async(a, data, name))
        else:
            run_callback(a, data, name)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - one JSON line either way
        print(json.dumps({"client": name, "error": f"{type(e).__name__}: {e}"}), flush=True)
        print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
