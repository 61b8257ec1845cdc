"""A reference realtime server built from fal's own server-side template.

Runs with a Python that has the ``fal`` PyPI package installed (not ours):
each app below goes through ``fal.realtime(...)``, the decorator fal apps use,
which wraps the handler in fal's websocket template (input queue, msgpack
codec, ``x-fal-error`` frames for failures and idle timeouts). The template is
served by FastAPI/uvicorn on 127.0.0.1 at ``/test/{app}/realtime``, beside a
stand-in of the token endpoint (``POST /tokens/``), so a client connects to it
exactly as to fal.ai.

Usage: ``python reference_server.py [--tls-cert PEM --tls-key PEM]`` prints
``reference server listening on 127.0.0.1:PORT`` and serves (wss with the
TLS options) until killed. ``bench/run`` serves it beside its own servers.
"""

from __future__ import annotations

import importlib
import socket
import sys
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI, Request, WebSocket

# `fal.realtime` the attribute is the decorator; the module holds the template.
fal_realtime_module = importlib.import_module("fal.realtime")
realtime = fal_realtime_module.realtime


class Apps:
    """The handlers, as methods of a fal App would be (they receive `self`)."""

    @realtime("/realtime", buffering=8)
    def echo(self, input: Any) -> Any:
        return input

    @realtime("/realtime", buffering=8, session_timeout=1.0)
    def idle(self, input: Any) -> Any:
        return input

    @realtime("/realtime")
    def fail(self, input: Any) -> Any:
        raise RuntimeError("handler raised: boom")

    # buffering=8: with the default (1) the template's outgoing queue holds 2
    # messages and a third is sent around it, out of order.
    @realtime("/realtime", buffering=8)
    async def stream(self, input: Any) -> AsyncIterator[Any]:
        for i in range(int(input.get("count", 3))):
            yield {**input, "index": i}


def main() -> None:
    instance = Apps()
    app = FastAPI()

    @app.post("/tokens/")
    async def tokens(request: Request) -> str:
        await request.body()
        return "reference-token"

    def route(template: Callable[..., Any]) -> Callable[[WebSocket], Any]:
        async def endpoint(websocket: WebSocket) -> None:
            await template(instance, websocket)

        return endpoint

    for name in ("echo", "idle", "fail", "stream"):
        app.add_api_websocket_route(f"/test/{name}/realtime", route(getattr(Apps, name)))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    tls = {}
    if "--tls-cert" in sys.argv and "--tls-key" in sys.argv:  # wss (the benchmark's wss sections)
        tls = dict(
            ssl_certfile=sys.argv[sys.argv.index("--tls-cert") + 1],
            ssl_keyfile=sys.argv[sys.argv.index("--tls-key") + 1],
        )
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws_max_size=64 * 1024 * 1024, **tls)
    server = uvicorn.Server(config)
    print(f"reference server listening on 127.0.0.1:{port}", flush=True)
    sys.stdout.flush()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
