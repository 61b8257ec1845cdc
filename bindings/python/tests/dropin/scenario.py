"""One scenario, run by ``tests/test_fal_client_diff.py`` twice: with ``fal_client``
(1.0.3) and with ``fal_realtime`` imported as ``fal_client``, against the local
emulator. Prints one JSON object: scenario name -> what a caller observes.

Usage: ``python scenario.py MODULE HOST IDLE_HOST CLOSED_PORT``, where HOST is
an emulator (keys ``test-key`` and ``kid:ksecret``), IDLE_HOST one started with
``--session-timeout 1`` and CLOSED_PORT a port nobody listens on.

Everything below the harness is code written for ``fal_client``: it touches
only ``fal_client.*`` names. Only :func:`point` (how each library is pointed
at a local plain-ws server) differs between the two runs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, List

import msgpack

MODULE, HOST, IDLE_HOST, CLOSED_PORT = sys.argv[1:5]

# `import fal_client`, or `import fal_realtime as fal_client`.
fal_client: Any = importlib.import_module(MODULE)

# ---------------------------------------------------------------------------
# Harness


def point(run_host: str = HOST, rest: str = HOST) -> None:
    """Point the library at a local plain server (ws:// and http://).

    fal_client 1.0.3 cannot be pointed at one without patching: it builds
    ``wss://{FAL_RUN_HOST}/`` at import and posts tokens to the hard-coded
    ``https://rest.fal.ai``, so its two module globals are replaced here.
    fal_realtime reads ``FAL_RUN_HOST`` / ``FAL_REST_URL`` (plain schemes are
    allowed for loopback hosts), which is what an environment-configured
    program would set.
    """
    if MODULE == "fal_client":
        fal_client.client.REALTIME_URL_FORMAT = f"ws://{run_host}/"
        fal_client.client.REST_URL = f"http://{rest}"
    else:
        os.environ["FAL_RUN_HOST"] = f"ws://{run_host}"
        os.environ["FAL_REST_URL"] = f"http://{rest}"


def plain(v: Any) -> Any:
    """A JSON-able form of a result (bytes as hex)."""
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v).hex() if len(v) <= 64 else f"{len(v)} bytes"}
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def caught(e: BaseException) -> Dict[str, Any]:
    """What an ``except`` clause of fal_client code can see of an exception.

    Keys starting with ``_`` are details the comparison ignores unless a
    named difference looks at them.
    """
    kinds = {
        "RealtimeError": fal_client.client.RealtimeError,
        "FalClientHTTPError": fal_client.FalClientHTTPError,
        "FalClientError": fal_client.FalClientError,
        "MissingCredentialsError": fal_client.auth.MissingCredentialsError,
        "ValueError": ValueError,
        "TimeoutError": TimeoutError,
        "ConnectionError": ConnectionError,
        "RuntimeError": RuntimeError,
    }
    out: Dict[str, Any] = {"raised": sorted(k for k, cls in kinds.items() if isinstance(e, cls))}
    if isinstance(e, fal_client.client.RealtimeError):
        out["error"] = e.error
        out["payload"] = plain(e.payload) if e.error != "CONNECTION_CLOSED" else None
        out["_reason"] = e.reason
    if isinstance(e, fal_client.FalClientHTTPError):
        out["status_code"] = e.status_code
    status = getattr(getattr(e, "response", None), "status_code", None) or getattr(e, "status", None)
    out["_status"] = status
    out["_type"] = f"{type(e).__module__}.{type(e).__qualname__}"
    out["_str"] = str(e)
    return out


def attempt(fn: Callable[[], Any]) -> Any:
    try:
        return {"value": plain(fn())}
    except Exception as e:  # what fal_client code would catch
        return caught(e)


async def attempt_async(fn: Callable[[], Any]) -> Any:
    try:
        return {"value": plain(await fn())}
    except Exception as e:
        return caught(e)


SCENARIOS: Dict[str, Callable[[], Any]] = {}


def scenario(fn: Callable[[], Any]) -> Callable[[], Any]:
    SCENARIOS[fn.__name__] = fn
    return fn


def run_async(fn: Callable[[], Any]) -> Callable[[], Any]:
    def wrapper() -> Any:
        return asyncio.run(fn())

    wrapper.__name__ = fn.__name__
    return scenario(wrapper)


def pk(v: Any) -> bytes:
    return bytes(msgpack.packb(v, use_bin_type=True))


# ---------------------------------------------------------------------------
# Realtime, blocking


@scenario
def rt_round_trip() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        out = []
        for i in range(5):
            conn.send({"i": i, "image": b"\x00\x01", "f": 0.5, "none": None, "list": [1, "x"]})
            out.append(conn.recv())
        return out


@scenario
def rt_options() -> Any:
    point()
    client = fal_client.SyncClient(key="test-key", default_timeout=30)
    out = []
    for kwargs in (
        {"max_buffering": 5},
        {"max_buffering": 60, "token_expiration": 60},
        {"use_jwt": False},
        {"path": "realtime"},
        {"path": "/realtime"},
    ):
        with client.realtime("owner/echo", **kwargs) as conn:
            conn.send({"kwargs": sorted(kwargs)})
            out.append(conn.recv())
    return out


@scenario
def rt_app_ids() -> Any:
    point()
    out = []
    for app in ("123-echo", "owner/echo/realtime", "owner/echo/sub/path"):
        with fal_client.SyncClient().realtime(app) as conn:
            conn.send({"app": app})
            out.append(conn.recv())
    return out


@scenario
def rt_invalid_app_id() -> Any:
    point()

    def go() -> None:
        with fal_client.SyncClient().realtime("not-an-app-id"):
            pass

    r = attempt(go)
    r["str"] = r.pop("_str")  # the same message, word for word
    return r


@scenario
def rt_invalid_max_buffering() -> Any:
    point()
    out = []
    for n in (0, 61):

        def go() -> None:
            with fal_client.SyncClient().realtime("owner/echo", max_buffering=n):
                pass

        out.append(attempt(go))
    return out


@scenario
def rt_send_bytes() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        conn.send(b"raw bytes")  # a msgpack bin
        conn.send(pk({"pre": "encoded"}))  # also a bin: fal_client never sends bytes as is
        return [conn.recv(), conn.recv()]


@scenario
def rt_codecs() -> Any:
    point()
    out = []
    with fal_client.SyncClient().realtime("owner/echo", encode_message=lambda m: json.dumps(m)) as conn:
        conn.send({"as": "json text"})  # a text frame: echoed as text, read as JSON
        out.append(conn.recv())
    with fal_client.SyncClient().realtime("owner/echo", encode_message=lambda m: pk(m)) as conn:
        conn.send({"as": "custom msgpack"})
        out.append(conn.recv())
    with fal_client.SyncClient().realtime(
        "owner/echo", decode_message=lambda b: {"decoded": msgpack.unpackb(b)}
    ) as conn:
        conn.send({"as": "custom decoder"})
        out.append(conn.recv())
    return out


@scenario
def rt_control_frames() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "timings"})  # x-fal-message first: skipped
        a = conn.recv()
        conn.send({"do": "text"})  # the result as a JSON text frame
        b = conn.recv()
        return [a, b]


@scenario
def rt_stream() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/stream") as conn:
        conn.send({"count": 3, "x": 1})
        return [conn.recv() for _ in range(3)]


@scenario
def rt_server_error() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/fail") as conn:
        conn.send({"x": 1})
        first = attempt(conn.recv)
        then = attempt(conn.recv)  # the app closed with 1000 after the error
        return [first, then]


@scenario
def rt_error_in_a_binary_frame() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "error_bin"})
        first = attempt(conn.recv)
        conn.send({"still": "up"})
        return [first, attempt(conn.recv)]


@scenario
def rt_unauthorized_frame() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "unauthorized"})
        first = attempt(conn.recv)
        sent = attempt(lambda: conn.send({"after": "unauthorized"}))
        return [first, {"raised": sent.get("raised", [])}, attempt(conn.recv)]


@scenario
def rt_abnormal_close() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "close", "code": 4001})
        r = attempt(conn.recv)
        reason = r.get("_reason", "")
        r["reason_has_code_and_text"] = "4001" in reason and "closing as asked" in reason
        return r


@scenario
def rt_recv_again_after_an_abnormal_close() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "close", "code": 4001})
        attempt(conn.recv)
        return attempt(conn.recv)


@scenario
def rt_normal_close_and_drop() -> Any:
    point()
    out = []
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "echo"})
        conn.send({"do": "close", "code": 1000})
        out.append([attempt(conn.recv), attempt(conn.recv)])
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "drop"})
        out.append(attempt(conn.recv))
    return out


@scenario
def rt_undecodable_frame() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "garbage"})
        bad = attempt(conn.recv)
        return [{"raised": bad.get("raised")}, attempt(conn.recv)]


@scenario
def rt_text_frame_not_json() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/echo", encode_message=lambda m: "hello, not JSON") as conn:
        conn.send({"x": 1})
        return attempt(conn.recv)


@scenario
def rt_oversized_result() -> Any:
    point()
    with fal_client.SyncClient().realtime("owner/control") as conn:
        conn.send({"do": "oversized", "size": 17 * 1024 * 1024})
        return attempt(conn.recv)


@scenario
def rt_idle_timeout() -> Any:
    point(IDLE_HOST, IDLE_HOST)
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        conn.send({"a": 1})
        return [attempt(conn.recv), attempt(conn.recv), attempt(conn.recv)]


@scenario
def rt_send_after_the_end() -> Any:
    point(IDLE_HOST, IDLE_HOST)
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        attempt(conn.recv)  # the idle TIMEOUT
        attempt(conn.recv)
        after_end = attempt(lambda: conn.send({"late": 1}))
    point()
    with fal_client.SyncClient().realtime("owner/echo") as conn:
        pass
    after_close = attempt(lambda: conn.send({"late": 2}))
    return {"after_end": after_end, "after_close": after_close}


@scenario
def rt_rejected_key() -> Any:
    point()

    def go() -> None:
        with fal_client.SyncClient(key="wrong-key").realtime("owner/echo"):
            pass

    r = attempt(go)
    r["detail_in_message"] = "Unauthorized" in r.get("_str", "")
    r["key_in_message"] = "wrong-key" in r.get("_str", "")
    return r


@scenario
def rt_token_endpoint_http_error() -> Any:
    point(HOST, f"{HOST}/no-such-prefix")

    def go() -> None:
        with fal_client.SyncClient().realtime("owner/echo"):
            pass

    return attempt(go)


@scenario
def rt_credentials_from_the_environment() -> Any:
    point()
    saved = os.environ.pop("FAL_KEY")
    try:

        def go() -> None:
            with fal_client.SyncClient().realtime("owner/echo"):
                pass

        missing = attempt(go)
        missing["names_the_variables"] = "Set FAL_KEY (or FAL_KEY_ID/FAL_KEY_SECRET)" in missing.get("_str", "")
        os.environ["FAL_KEY_ID"], os.environ["FAL_KEY_SECRET"] = "kid", "ksecret"
        with fal_client.SyncClient().realtime("owner/echo") as conn:
            conn.send({"via": "FAL_KEY_ID and FAL_KEY_SECRET"})
            with_id_secret = conn.recv()
        return {"missing": missing, "id_secret": plain(with_id_secret)}
    finally:
        os.environ["FAL_KEY"] = saved
        os.environ.pop("FAL_KEY_ID", None)
        os.environ.pop("FAL_KEY_SECRET", None)


@scenario
def rt_connection_refused() -> Any:
    point(f"127.0.0.1:{CLOSED_PORT}", HOST)

    def go() -> None:
        with fal_client.SyncClient().realtime("owner/echo"):
            pass

    return attempt(go)


@scenario
def rt_handshake_rejected() -> Any:
    point()

    def go() -> None:
        with fal_client.SyncClient().realtime("owner/app", path="/not-realtime"):
            pass

    return attempt(go)


# ---------------------------------------------------------------------------
# Realtime, asyncio


@run_async
async def art_round_trip() -> Any:
    point()
    async with fal_client.AsyncClient().realtime("owner/echo", max_buffering=10) as conn:
        out = []
        for i in range(5):
            await conn.send({"i": i, "blob": b"\x02"})
            out.append(await conn.recv())
        await conn.send(b"bytes too")
        out.append(await conn.recv())
        return out


@run_async
async def art_errors() -> Any:
    point()
    out = []
    async with fal_client.AsyncClient().realtime("owner/fail") as conn:
        await conn.send({"x": 1})
        out.append(await attempt_async(conn.recv))
        out.append(await attempt_async(conn.recv))
    async with fal_client.AsyncClient().realtime("owner/control") as conn:
        await conn.send({"do": "close", "code": 4001})
        r = await attempt_async(conn.recv)
        out.append({"raised": r.get("raised"), "error": r.get("error")})

    async def bad_key() -> None:
        async with fal_client.AsyncClient(key="wrong-key").realtime("owner/echo"):
            pass

    r = await attempt_async(bad_key)
    out.append({"raised": r.get("raised"), "status_code": r.get("status_code")})
    return out


@run_async
async def art_error_in_a_binary_frame() -> Any:
    point()
    async with fal_client.AsyncClient().realtime("owner/control") as conn:
        await conn.send({"do": "error_bin"})
        return await attempt_async(conn.recv)


@run_async
async def art_idle_timeout() -> Any:
    point(IDLE_HOST, IDLE_HOST)
    async with fal_client.AsyncClient().realtime("owner/echo") as conn:
        await conn.send({"a": 1})
        return [await attempt_async(conn.recv) for _ in range(3)]


@run_async
async def art_module_level() -> Any:
    # fal_client's module-level async client keeps the event loop it first ran
    # on: both module-level calls run in this one loop.
    point()
    async with fal_client.realtime_async("owner/echo") as conn:
        await conn.send({"module": "level"})
        a = await conn.recv()
    async with fal_client.ws_connect_async("owner/control", path="/realtime") as ws:
        await ws.send(pk({"do": "close", "code": 4002}))
        r = await attempt_async(ws.recv)
        b = ["value" not in r, ws.close_code, ws.close_reason]  # raised (the class: ws_abnormal_close)
    return [a, b]


@scenario
def rt_module_level() -> Any:
    point()
    with fal_client.realtime("owner/echo") as conn:
        conn.send({"module": "level"})
        return conn.recv()


# ---------------------------------------------------------------------------
# Raw WebSockets: what fal_client users touch on the `websockets` connection


@scenario
def ws_frames() -> Any:
    point()
    with fal_client.SyncClient().ws_connect("owner/echo") as ws:
        before = [ws.close_code, ws.close_reason]
        ws.send(pk({"bin": b"\x00"}))
        a = ws.recv()
        ws.send('{"text": true}')
        b = ws.recv()
        ws.send("as bytes")
        c = ws.recv(decode=False)
        ws.send(b"5")
        d = ws.recv(decode=True)
        e = attempt(lambda: ws.recv(timeout=0.1))
        return {"before": before, "frames": [a, b, c, d], "timeout": e["raised"]}


@scenario
def ws_options_and_module_level() -> Any:
    point()
    out = []
    for kwargs in ({"use_jwt": False}, {"max_buffering": 3}, {"token_expiration": 30}, {"path": "/realtime"}):
        with fal_client.SyncClient().ws_connect("owner/echo", **kwargs) as ws:
            ws.send("x")
            out.append(ws.recv())
    with fal_client.ws_connect("owner/echo") as ws:
        ws.send("module")
        out.append(ws.recv())
    return out


@scenario
def ws_close_codes() -> Any:
    point()
    out = []
    with fal_client.SyncClient().ws_connect("owner/echo") as ws:
        ws.close(4000, "bye")
        out.append([ws.close_code, ws.close_reason])
    with fal_client.SyncClient().ws_connect("owner/echo") as ws:
        pass
    out.append([ws.close_code, ws.close_reason])
    with fal_client.SyncClient().ws_connect("owner/control", path="/realtime") as ws:
        ws.send(pk({"do": "echo"}))
        ws.send(pk({"do": "close", "code": 1000}))
        frames = [msgpack.unpackb(f) for f in ws]
        out.append([frames, ws.close_code, ws.close_reason])
    return out


@scenario
def ws_abnormal_close() -> Any:
    point()
    out = []
    for do in ({"do": "close", "code": 4321}, {"do": "drop"}):
        with fal_client.SyncClient().ws_connect("owner/control", path="/realtime") as ws:
            ws.send(pk(do))
            r = attempt(ws.recv)
            out.append({"raised": r["raised"], "_type": r["_type"], "code": [ws.close_code, ws.close_reason]})
    return out


@scenario
def ws_recv_after_a_clean_close() -> Any:
    point()
    with fal_client.SyncClient().ws_connect("owner/echo") as ws:
        ws.close()
        r = attempt(ws.recv)
        return {"returned": "value" in r, "value": r.get("value"), "_type": r.get("_type")}


@run_async
async def aws_frames_and_close() -> Any:
    point()
    out: List[Any] = []
    async with fal_client.AsyncClient().ws_connect("owner/echo") as ws:
        out.append([ws.close_code, ws.close_reason])
        await ws.send(pk([1, 2, 3]))
        out.append(await ws.recv())
        await ws.send("text")
        out.append(await ws.recv())
        await ws.send("t")
        out.append(await ws.recv(decode=False))
        await ws.close(code=3001, reason="done")
        out.append([ws.close_code, ws.close_reason])
    async with fal_client.AsyncClient().ws_connect("owner/control", path="/realtime") as ws:
        await ws.send(pk({"do": "close", "code": 1000}))
        out.append([f async for f in ws])
        out.append([ws.close_code, ws.close_reason])
    return out


# ---------------------------------------------------------------------------


def main() -> None:
    only = set(sys.argv[5:])
    results: Dict[str, Any] = {}
    for name, fn in SCENARIOS.items():
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            results[name] = plain(fn())
        except Exception:  # a scenario that broke: reported, not hidden
            results[name] = {"scenario_failed": traceback.format_exc()[-2000:]}
        print(f"{MODULE}: {name} {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
