"""Typed usage of the public API, checked with ``mypy --strict`` (never run).

Every line here is something a user writes; mypy must accept it with the
installed package's stubs and ``py.typed``, and infer the types asserted below.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional, Union

import fal_realtime
from fal_realtime import (
    AsyncRealtimeConnection,
    AsyncWsConnection,
    CallbackConnection,
    Client,
    FalRealtimeError,
    RealtimeConnection,
    RealtimeError,
    Stats,
    WsConnection,
)


def sync_style(client: Client) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    with client.realtime("fal-ai/fast-lcm-diffusion", max_buffering=4) as conn:
        c: RealtimeConnection = conn
        c.send({"prompt": "a cat", "image": b"\x89PNG"})
        first: Optional[Dict[str, Any]] = c.recv(timeout=5.0)
        if first is not None:
            out.append(first)
        for result in c:
            out.append(result)
        stats: Stats = c.stats
        sent: int = stats.frames_sent
        timing: Optional[float] = stats.last_server_timing
        del sent, timing
    return out


def module_level() -> None:
    with fal_realtime.realtime("fal-ai/app", use_jwt=False, path="/realtime") as conn:
        conn.send({"x": 1})
    with fal_realtime.ws_connect("fal-ai/app", path="/ws") as ws:
        w: WsConnection = ws
        w.send(b"\x00")
        w.send("text")
        frame: Union[bytes, str, None] = w.recv()
        del frame


async def async_style(client: Client) -> Optional[Dict[str, Any]]:
    async with client.realtime_async("fal-ai/app", token_expiration=60) as conn:
        c: AsyncRealtimeConnection = conn
        await c.send({"prompt": "a dog"})
        result = await c.recv(timeout=1.5)
        async for r in c:
            print(r["images"])
        await c.close()
        return result


async def async_ws(client: Client) -> None:
    async with fal_realtime.ws_connect_async("fal-ai/app") as ws:
        w: AsyncWsConnection = ws
        await w.send(b"bytes")
        frame: Union[bytes, str, None] = await w.recv()
        del frame
    async with client.ws_connect_async("fal-ai/app", use_jwt=False) as ws2:
        await ws2.send("x")


def callback_style() -> CallbackConnection:
    def on_result(result: Dict[str, Any]) -> None:
        logging.getLogger(__name__).info("result %s", result)

    def on_error(error: FalRealtimeError) -> None:
        if isinstance(error, RealtimeError):
            print(error.error, error.reason, error.payload)
        if isinstance(error, fal_realtime.ClosedError):
            code: Optional[int] = error.code
            del code

    async def token_provider(app: str) -> str:
        await asyncio.sleep(0)
        return "token-for-" + app

    conn = fal_realtime.connect(
        "fal-ai/app",
        on_result=on_result,
        on_error=on_error,
        on_state=lambda state: print(state),
        connection_key="main",
        throttle_interval=0.064,
        token_provider=token_provider,
        token_expiration=120,
    )
    conn.send({"prompt": "a bird"})
    state: str = conn.state
    del state
    conn.close()
    with conn:
        pass
    conn.shutdown()
    return conn


def client_options() -> Client:
    return Client(
        key="id:secret",
        run_host="127.0.0.1:8443",
        rest_url="https://127.0.0.1:8443",
        ca_file="/tmp/ca.pem",
        allow_insecure_ws=False,
        open_timeout=10.0,
    )


def codec() -> None:
    data: bytes = fal_realtime.packb({"a": [1, 2.5, None, b"x"]})
    value: Any = fal_realtime.unpackb(data)
    ext = fal_realtime.ExtType(1, b"\x00")
    code: int = ext.code
    del value, code


def errors() -> None:
    try:
        sync_style(Client())
    except fal_realtime.FalTimeoutError as e:
        print(e.message)
    except fal_realtime.AuthError as e:
        status: Optional[int] = e.status
        del status
    except fal_realtime.InvalidArgumentError as e:
        assert isinstance(e, ValueError)
    except FalRealtimeError as e:
        kind: str = e.kind
        body: Optional[str] = e.body
        del kind, body
    version: str = fal_realtime.__version__
    del version


def fal_client_drop_in() -> None:
    # Code written for fal_client, with `import fal_realtime as fal_client`.
    import fal_realtime as fal_client
    from fal_realtime.auth import MissingCredentialsError
    from fal_realtime.client import RealtimeError as ClientRealtimeError

    client = fal_client.SyncClient(key=None, default_timeout=30.0)
    try:
        with client.realtime("fal-ai/app", max_buffering=2, encode_message=lambda m: fal_client.packb(m)) as conn:
            conn.send({"prompt": "x"})
            conn.send_msgpack(fal_client.packb({"pre": "encoded"}))
            r: Optional[Dict[str, Any]] = conn.recv()
            del r
        with client.ws_connect("fal-ai/app", path="/ws") as ws:
            ws.send("hello")
            text: Union[bytes, str, None] = ws.recv(timeout=1.0, decode=False)
            ws.close(code=4000, reason="bye")
            code: Optional[int] = ws.close_code
            reason: Optional[str] = ws.close_reason
            del text, code, reason
    except ClientRealtimeError as e:
        print(e.error, e.reason, e.payload)
    except fal_client.FalClientHTTPError as e:
        status: Optional[int] = e.status_code
        print(status, e.response.text, e.message)
    except MissingCredentialsError:
        pass
    token: str = fal_client.auth.fetch_credentials()
    del token


async def fal_client_drop_in_async() -> None:
    import fal_realtime as fal_client

    client = fal_client.AsyncClient()
    async with client.realtime("fal-ai/app", use_jwt=False) as conn:
        c: fal_client.client.AsyncRealtimeConnection = conn
        await c.send({"x": 1})
        await c.send_msgpack(b"\x80")
    async with client.ws_connect("fal-ai/app") as ws:
        await ws.close(1000)
        closed: Optional[int] = ws.close_code
        frame: Union[bytes, str, None] = await ws.recv(decode=True)
        del closed, frame


def client_only() -> None:
    server = Client(server_side=True)
    conn = server.connect("fal-ai/app", on_result=print, client_only=True)
    conn.send_msgpack(b"\x80")
    dropped: int = conn.stats.inputs_dropped_client_only
    del dropped
