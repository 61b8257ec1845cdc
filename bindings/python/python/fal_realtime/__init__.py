"""fal_realtime: fast clients for fal.ai realtime WebSocket endpoints.

A drop-in for the realtime part of ``fal_client`` (``import fal_realtime as
fal_client``: ``SyncClient``, ``AsyncClient``, ``realtime``, ``ws_connect``,
``fal_client.client.RealtimeError``, ``fal_client.auth.MissingCredentialsError``,
``FalClientHTTPError``), built on one Rust core. Three styles:

* :func:`realtime` / :func:`realtime_async`: explicit connect, then ``send`` and
  ``recv`` (or iterate), as in ``fal_client``.
* :func:`connect`: the callback style of fal's JavaScript client: lazy connect,
  throttled sends, reconnect on the next send after any close.
* :func:`ws_connect` / :func:`ws_connect_async`: a raw WebSocket with the same
  URL and auth rules.

Payloads are converted between msgpack and Python objects in Rust: ``bytes``
stay ``bytes``. The GIL is released during every network wait. Log records go
to the ``fal_realtime`` logger.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from contextlib import asynccontextmanager, contextmanager
from os import PathLike
# `typing` is only imported by type checkers: at run time it would be about
# 1.7 MiB of every process (annotations are strings here, see the
# `__future__` import above).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import (
        Any,
        AsyncContextManager,
        AsyncIterator,
        Awaitable,
        Callable,
        ContextManager,
        Dict,
        Iterator,
        Optional,
        Union,
        cast,
    )
else:

    def cast(_type: object, value: object) -> object:
        return value


from . import _native
from ._errors import (
    AuthError,
    ClosedError,
    ConnectError,
    ConnectionClosedOK,
    CredentialsError,
    DecodeError,
    EncodeError,
    FalClientError,
    FalClientHTTPError,
    FalRealtimeError,
    FalTimeoutError,
    HttpError,
    InternalError,
    InvalidArgumentError,
    MissingCredentialsError,
    NotConnectedError,
    RealtimeError,
    TlsError,
    TokenProviderError,
    _ws_end,
)
from ._native import CallbackConnection, RealtimeConnection, Stats, WsConnection, packb, unpackb
from ._support import ExtType

# Registered first, so it runs last at exit (atexit is LIFO): after it,
# library threads stop calling into the exiting interpreter.
atexit.register(_native._interpreter_exiting)

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "Client",
    "SyncClient",
    "AsyncClient",
    "realtime",
    "realtime_async",
    "ws_connect",
    "ws_connect_async",
    "connect",
    "RealtimeConnection",
    "AsyncRealtimeConnection",
    "WsConnection",
    "AsyncWsConnection",
    "CallbackConnection",
    "Stats",
    "ExtType",
    "packb",
    "unpackb",
    "TokenProvider",
    "FalClientError",
    "FalClientHTTPError",
    "FalRealtimeError",
    "InvalidArgumentError",
    "CredentialsError",
    "MissingCredentialsError",
    "AuthError",
    "HttpError",
    "TokenProviderError",
    "ConnectError",
    "TlsError",
    "FalTimeoutError",
    "RealtimeError",
    "ClosedError",
    "ConnectionClosedOK",
    "DecodeError",
    "EncodeError",
    "NotConnectedError",
    "InternalError",
]

#: A token provider: called with the app id and path (e.g. ``"123/my-app/realtime"``),
#: returns a token, or an awaitable of one.
if TYPE_CHECKING:
    TokenProvider = Callable[[str], Union[str, Awaitable[str]]]
else:

    def __getattr__(name: str) -> object:
        # `TokenProvider` is made on first use, with `typing` (see above).
        if name == "TokenProvider":
            from typing import Awaitable, Callable, Union

            value = Callable[[str], Union[str, Awaitable[str]]]
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Default token life requested from fal's token endpoint, in seconds (as ``fal_client``).
REALTIME_TOKEN_EXPIRATION_SECONDS = 120

#: The WebSocket handshake timeout of ``fal_client``, in seconds.
REALTIME_OPEN_TIMEOUT = 90.0


def _realtime_path(path: Optional[str]) -> Optional[str]:
    # "/realtime" is the default: let the core apply it, so that an app id that
    # already ends with /realtime does not get it twice.
    if path is None or path.strip("/") in ("", "realtime"):
        return None
    return path


def _ws_path(path: Optional[str]) -> Optional[str]:
    return path or None


def _is_idle_timeout(exc: BaseException) -> bool:
    # The server's idle TIMEOUT: `recv` raises it (as fal_client), iteration ends.
    return isinstance(exc, RealtimeError) and not isinstance(exc, ClosedError) and exc.error == "TIMEOUT"


def _decode_frame(frame: Union[bytes, str, None], decode: Optional[bool]) -> Union[bytes, str, None]:
    # `recv(decode=...)` as in `websockets`.
    if decode is True and isinstance(frame, bytes):
        return frame.decode("utf-8")
    if decode is False and isinstance(frame, str):
        return frame.encode("utf-8")
    return frame


async def _recv(native: _native.AsyncConnection, timeout: Optional[float]) -> Any:
    ready, value = native.recv()
    if ready:
        return value
    import asyncio  # lazily (with ssl it is ~11 MiB); inside a coroutine it is loaded already

    try:
        if timeout is None:
            return await value
        try:
            return await asyncio.wait_for(value, timeout)
        except asyncio.TimeoutError:
            if value.done() and not value.cancelled():
                return value.result()  # it arrived as the timeout fired
            raise FalTimeoutError(f"no message within {timeout:.3f} s") from None
    except asyncio.CancelledError:
        # Cancelled (e.g. by an outer ``wait_for``) after the result was set
        # but before this coroutine resumed (Python >= 3.12 cancels the task
        # then): give the result back to the next ``recv``, in order.
        if value.done() and not value.cancelled():
            native._putback(value)
        raise


class AsyncRealtimeConnection:
    """An asyncio realtime connection, from :func:`realtime_async`.

    ``await send(input)``, ``await recv()`` (``None`` once the connection closed
    cleanly; the server's idle ``TIMEOUT`` raises ``RealtimeError("TIMEOUT", ...)``
    once, as in ``fal_client``), ``async for result in conn`` (ends cleanly on
    either). Several tasks may use it at once; cancelling a task that awaits
    ``recv`` loses no result.
    """

    __slots__ = ("_c", "__weakref__")

    def __init__(self, native: _native.AsyncConnection) -> None:
        self._c = native

    async def send(self, arguments: Any) -> None:
        """Send one input, encoded as msgpack (``bytes`` become a msgpack bin, as in
        ``fal_client``), or through ``encode_message``."""
        pending = self._c.send(arguments)
        if pending is not None:
            await pending

    async def send_msgpack(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send pre-encoded msgpack (exactly one value) as is, without ``encode_message``.

        Raises :class:`EncodeError` when ``data`` is not one well-formed msgpack value.
        """
        pending = self._c.send_msgpack(data)
        if pending is not None:
            await pending

    async def recv(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next result; ``None`` once the connection has closed cleanly.

        The server's idle ``TIMEOUT`` raises ``RealtimeError("TIMEOUT", reason,
        payload)`` once (as ``fal_client``); ``None`` after it. With ``timeout``
        (seconds), raises :class:`FalTimeoutError` when nothing arrives in time.
        """
        return cast("Optional[Dict[str, Any]]", await _recv(self._c, timeout))

    async def close(self) -> None:
        """Close the connection (code 1000). Idempotent.

        Inputs still queued (sends other tasks started) go out first, then the
        close frame; then waits up to 1 s for the server's reply (unless another
        task awaits :meth:`recv`, which gets it). When none of those sends
        finishes for 10 s (the server reads nothing, or too little), gives up:
        the connection is shut down without a close frame, each send still
        queued raises :class:`ClosedError`, and a pending :meth:`recv` ends.
        Cancelling the awaiting task does not stop the close; a second call
        waits for its end.
        """
        pending = self._c.close()
        if pending is not None:
            await pending

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._c.closed

    @property
    def stats(self) -> Stats:
        """Counters of this connection."""
        return self._c.stats

    def __aiter__(self) -> AsyncRealtimeConnection:
        """Iterate over results until the connection closes cleanly."""
        return self

    async def __anext__(self) -> Dict[str, Any]:
        """The next result; stops when the connection has closed cleanly, also
        after the server's idle ``TIMEOUT``."""
        try:
            result = await self.recv()
        except RealtimeError as exc:
            if _is_idle_timeout(exc):
                raise StopAsyncIteration from None
            raise
        if result is None:
            raise StopAsyncIteration
        return result

    async def __aenter__(self) -> AsyncRealtimeConnection:
        """The connection itself."""
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Close the connection."""
        await self.close()


class AsyncWsConnection:
    """An asyncio raw WebSocket, from :func:`ws_connect_async`: frames in, frames out.

    What ``fal_client`` users touch on the ``websockets`` connection it returns:
    ``send``, ``recv(timeout=None, decode=None)``, ``async for``,
    ``close(code=1000, reason="")``, ``close_code``, ``close_reason``, ``async with``.
    """

    __slots__ = ("_c", "__weakref__")

    def __init__(self, native: _native.AsyncConnection) -> None:
        self._c = native

    async def send(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Send ``bytes`` (a binary frame) or ``str`` (a text frame)."""
        pending = self._c.send(data)
        if pending is not None:
            await pending

    async def recv(self, timeout: Optional[float] = None, decode: Optional[bool] = None) -> Union[bytes, str]:
        """The next frame (``bytes`` or ``str``).

        Once the connection has ended, raises as ``websockets`` does:
        :class:`ConnectionClosedOK` after a clean close (1000/1001), else
        :class:`ClosedError` with the code. With ``timeout`` (seconds), raises
        :class:`FalTimeoutError` (a ``TimeoutError``) when nothing arrives in
        time. ``decode``, as in ``websockets``: ``True`` returns binary frames
        as ``str`` (UTF-8), ``False`` text frames as ``bytes``.
        """
        frame = cast("Union[bytes, str, None]", await _recv(self._c, timeout))
        if frame is None:
            raise _ws_end(self._c.close_code, self._c.close_reason)
        return cast("Union[bytes, str]", _decode_frame(frame, decode))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason`` and wait up to 1 s for the server's
        reply (then :attr:`close_code` is known). Idempotent. A code that cannot be
        sent, or a reason over 123 bytes, raises :class:`InvalidArgumentError`.

        Frames still queued (sends other tasks started) go out before the close
        frame. When none of them finishes for 10 s (the server reads nothing,
        or too little), gives up: the socket is shut down without a close frame
        (:attr:`close_code` 1006), each frame still queued raises
        :class:`ClosedError`, and a pending :meth:`recv` ends. Cancelling the awaiting task does not stop the close; a second
        call waits for its end."""
        pending = self._c.close(code, reason)
        if pending is not None:
            await pending

    @property
    def close_code(self) -> Optional[int]:
        """The close code of how the socket ended, as in ``websockets``: the code of
        the server's close frame, 1006 when it ended without one; ``None`` while open."""
        return self._c.close_code

    @property
    def close_reason(self) -> Optional[str]:
        """The reason of the server's close frame (``""`` if none); ``None`` while open."""
        return self._c.close_reason

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._c.closed

    @property
    def stats(self) -> Stats:
        """Counters of this connection."""
        return self._c.stats

    def __aiter__(self) -> AsyncWsConnection:
        """Iterate over frames until the connection closes cleanly."""
        return self

    async def __anext__(self) -> Union[bytes, str]:
        """The next frame; stops when the connection has closed cleanly."""
        frame = cast("Union[bytes, str, None]", await _recv(self._c, None))
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def __aenter__(self) -> AsyncWsConnection:
        """The connection itself."""
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Close the connection."""
        await self.close()


_callback_connections: "weakref.WeakSet[CallbackConnection]" = weakref.WeakSet()


@atexit.register
def _shutdown_callback_connections() -> None:
    # Stop callback connections before the interpreter goes away, so that no
    # callback starts while Python finalizes.
    for conn in list(_callback_connections):
        try:
            conn.shutdown()
        except Exception:  # pragma: no cover - best effort at exit
            pass


class Client:
    """A client: credentials, endpoints and TLS settings, and the three styles of connection.

    Args:
        key: the API key; default ``FAL_KEY`` (or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``).
        run_host: host of the realtime endpoints; default ``FAL_RUN_HOST`` or ``fal.run``.
            ``ws://host:port`` (plain, e.g. a local emulator) needs ``allow_insecure_ws``.
        rest_url: base URL of the token endpoint; default ``FAL_REST_URL`` or ``https://rest.fal.ai``.
        ca_file: an extra PEM file of CA certificates to trust beside the system's.
        allow_insecure_ws: allow plain ``ws://`` and ``http://`` (local testing only).
        open_timeout: seconds allowed for the token fetch plus the handshake (default 90).
        max_message_size: largest accepted incoming frame and message, in bytes (default
            16 MiB per frame, 64 MiB per message). A larger one ends the connection
            (close code 1009) with a ``ClosedError``.
        ping_interval: keepalive: seconds between WebSocket pings (default 20, as in
            ``fal_client``); ``None`` disables keepalive. Blocking and asyncio connections
            ping while a ``recv`` waits; callback connections ping from their task.
        ping_timeout: keepalive: seconds to wait for any frame after a ping before the
            connection is declared dead, closed with 1011 and reported as a
            ``FalTimeoutError`` (default 20); ``None`` never gives up.
        server_side: this process renders pages on a server (server-side rendering):
            callback connections made with ``connect(..., client_only=True)`` are then
            no-ops whose inputs are dropped (logged at debug level, counted in
            ``stats.inputs_dropped_client_only``), as fal's JS client does outside a
            browser. Default ``False``.

    Plain ``ws://`` / ``http://`` to a loopback host (``127.0.0.0/8``, ``[::1]``,
    ``localhost``) needs no ``allow_insecure_ws``: a token sent in clear to this
    machine never leaves it. So ``FAL_RUN_HOST=ws://127.0.0.1:8080`` with
    ``FAL_REST_URL=http://127.0.0.1:8080`` points unchanged code at a local emulator.
    """

    def __init__(
        self,
        key: Optional[str] = None,
        run_host: Optional[str] = None,
        rest_url: Optional[str] = None,
        ca_file: Union[str, "PathLike[str]", None] = None,
        allow_insecure_ws: bool = False,
        *,
        open_timeout: Optional[float] = None,
        max_message_size: Optional[int] = None,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        server_side: bool = False,
    ) -> None:
        self._native = _native.Client(
            key=key,
            run_host=run_host,
            rest_url=rest_url,
            ca_file=ca_file,
            allow_insecure_ws=allow_insecure_ws,
            open_timeout=open_timeout,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            server_side=server_side,
        )

    def __repr__(self) -> str:
        return repr(self._native)

    @contextmanager
    def realtime(
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "/realtime",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
        token_provider: Optional[TokenProvider] = None,
    ) -> Iterator[RealtimeConnection]:
        """Open a realtime connection to ``application`` (blocking), as ``fal_client.realtime``.

        Yields a :class:`RealtimeConnection`; closes it on exit. Raises a
        :class:`FalRealtimeError` subclass when the connection cannot be opened.

        Args:
            application: the app id, e.g. ``"fal-ai/fast-lcm-diffusion"``.
            use_jwt: ``True``: a short-lived token in the URL; ``False``: the key in a header.
            path: the path after the app id (default ``/realtime``, never doubled).
            max_buffering: the server-side input queue length, 1..60.
            token_expiration: the token life to request, in seconds.
            encode_message: replaces the msgpack encoder; returns ``bytes`` or ``str``.
            decode_message: replaces the msgpack decoder of binary frames.
            token_provider: fetches tokens instead of fal's token endpoint.
        """
        conn = self._native.realtime(
            application,
            path=_realtime_path(path),
            use_jwt=use_jwt,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
            encode_message=encode_message,
            decode_message=decode_message,
        )
        try:
            yield conn
        finally:
            conn.close()

    @asynccontextmanager
    async def realtime_async(
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "/realtime",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
        token_provider: Optional[TokenProvider] = None,
    ) -> AsyncIterator[AsyncRealtimeConnection]:
        """The asyncio form of :meth:`realtime`: ``async with``, yielding an
        :class:`AsyncRealtimeConnection`. Same arguments."""
        native = await self._native.realtime_async(
            application,
            path=_realtime_path(path),
            use_jwt=use_jwt,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
            encode_message=encode_message,
            decode_message=decode_message,
        )
        conn = AsyncRealtimeConnection(native)
        try:
            yield conn
        finally:
            await conn.close()

    @contextmanager
    def ws_connect(
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        token_provider: Optional[TokenProvider] = None,
    ) -> Iterator[WsConnection]:
        """Open a raw WebSocket to ``application`` (blocking), with the same URL and
        auth rules as :meth:`realtime` but no codec and no default path.

        Yields a :class:`WsConnection`; closes it on exit.
        """
        conn = self._native.ws_connect(
            application,
            path=_ws_path(path),
            use_jwt=use_jwt,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
        )
        try:
            yield conn
        finally:
            conn.close()

    @asynccontextmanager
    async def ws_connect_async(
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        token_provider: Optional[TokenProvider] = None,
    ) -> AsyncIterator[AsyncWsConnection]:
        """The asyncio form of :meth:`ws_connect`, yielding an :class:`AsyncWsConnection`."""
        native = await self._native.ws_connect_async(
            application,
            path=_ws_path(path),
            use_jwt=use_jwt,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
        )
        conn = AsyncWsConnection(native)
        try:
            yield conn
        finally:
            await conn.close()

    def connect(
        self,
        application: str,
        *,
        on_result: Callable[[Any], Any],
        on_error: Optional[Callable[[FalRealtimeError], Any]] = None,
        on_state: Optional[Callable[[str], Any]] = None,
        connection_key: Optional[str] = None,
        throttle_interval: float = 0.128,
        max_buffering: Optional[int] = None,
        path: Optional[str] = None,
        token_provider: Optional[TokenProvider] = None,
        token_expiration: Optional[float] = None,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
        use_jwt: bool = True,
        client_only: bool = False,
    ) -> CallbackConnection:
        """A callback-style connection, like ``fal.realtime.connect`` of fal's JS client.

        Returns at once; the connection opens on the first ``send``. While it
        connects only the latest input is kept; sends are throttled to one per
        ``throttle_interval`` seconds (the latest input of a burst always goes
        out); after any close the next ``send`` reconnects with a fresh token.

        Callbacks run on a library thread holding the GIL, one at a time per
        connection; an exception inside one is logged (logger ``fal_realtime``)
        and never stops the connection. ``on_result(result)`` gets each result,
        ``on_error(exc)`` each error (a :class:`FalRealtimeError`; without it,
        errors are logged), ``on_state(state)`` each state change (``"idle"``,
        ``"authenticating"``, ``"connecting"``, ``"open"``, ``"closed"``).

        With ``connection_key``, a live connection with the same key is
        returned and these callbacks replace its earlier ones.
        ``token_provider`` may be sync or async (run on the event loop that was
        running when ``connect`` was called, if any); with ``token_expiration``
        (seconds), tokens are refreshed at 90 % of their life.
        ``client_only`` is the JS client's ``clientOnly``: on a client made with
        ``server_side=True`` the connection never opens and its inputs are
        dropped (logged, counted in ``stats.inputs_dropped_client_only``);
        elsewhere it has no effect.
        Keep a reference to the returned connection: it shuts down once no
        reference is left. Use it as a context manager, or call ``shutdown()``.
        """
        conn = self._native.connect(
            application,
            on_result=on_result,
            on_error=on_error,
            on_state=on_state,
            connection_key=connection_key,
            throttle_interval=throttle_interval,
            max_buffering=max_buffering,
            path=_ws_path(path),
            use_jwt=use_jwt,
            token_provider=token_provider,
            token_expiration=token_expiration,
            encode_message=encode_message,
            decode_message=decode_message,
            client_only=client_only,
        )
        _callback_connections.add(conn)
        return conn


_default_client: Optional[Client] = None
_default_lock = threading.Lock()


def _client() -> Client:
    global _default_client
    c = _default_client
    if c is None:
        with _default_lock:
            if _default_client is None:
                _default_client = Client()
            c = _default_client
    return c


def realtime(
    application: str,
    *,
    use_jwt: bool = True,
    path: str = "/realtime",
    max_buffering: Optional[int] = None,
    token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
    encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
    decode_message: Optional[Callable[[bytes], Any]] = None,
    token_provider: Optional[TokenProvider] = None,
) -> ContextManager[RealtimeConnection]:
    """:meth:`Client.realtime` on the default client (configured from the environment).

    >>> with fal_realtime.realtime("fal-ai/fast-lcm-diffusion") as conn:  # doctest: +SKIP
    ...     conn.send({"prompt": "a cat"})
    ...     result = conn.recv()
    """
    return _client().realtime(
        application,
        use_jwt=use_jwt,
        path=path,
        max_buffering=max_buffering,
        token_expiration=token_expiration,
        encode_message=encode_message,
        decode_message=decode_message,
        token_provider=token_provider,
    )


def realtime_async(
    application: str,
    *,
    use_jwt: bool = True,
    path: str = "/realtime",
    max_buffering: Optional[int] = None,
    token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
    encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
    decode_message: Optional[Callable[[bytes], Any]] = None,
    token_provider: Optional[TokenProvider] = None,
) -> AsyncContextManager[AsyncRealtimeConnection]:
    """:meth:`Client.realtime_async` on the default client (configured from the environment).

    >>> async with fal_realtime.realtime_async("fal-ai/fast-lcm-diffusion") as conn:  # doctest: +SKIP
    ...     await conn.send({"prompt": "a cat"})
    ...     result = await conn.recv()
    """
    return _client().realtime_async(
        application,
        use_jwt=use_jwt,
        path=path,
        max_buffering=max_buffering,
        token_expiration=token_expiration,
        encode_message=encode_message,
        decode_message=decode_message,
        token_provider=token_provider,
    )


def ws_connect(
    application: str,
    *,
    use_jwt: bool = True,
    path: str = "",
    max_buffering: Optional[int] = None,
    token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
    token_provider: Optional[TokenProvider] = None,
) -> ContextManager[WsConnection]:
    """:meth:`Client.ws_connect` on the default client (configured from the environment)."""
    return _client().ws_connect(
        application,
        use_jwt=use_jwt,
        path=path,
        max_buffering=max_buffering,
        token_expiration=token_expiration,
        token_provider=token_provider,
    )


def ws_connect_async(
    application: str,
    *,
    use_jwt: bool = True,
    path: str = "",
    max_buffering: Optional[int] = None,
    token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
    token_provider: Optional[TokenProvider] = None,
) -> AsyncContextManager[AsyncWsConnection]:
    """:meth:`Client.ws_connect_async` on the default client (configured from the environment)."""
    return _client().ws_connect_async(
        application,
        use_jwt=use_jwt,
        path=path,
        max_buffering=max_buffering,
        token_expiration=token_expiration,
        token_provider=token_provider,
    )


def connect(
    application: str,
    *,
    on_result: Callable[[Any], Any],
    on_error: Optional[Callable[[FalRealtimeError], Any]] = None,
    on_state: Optional[Callable[[str], Any]] = None,
    connection_key: Optional[str] = None,
    throttle_interval: float = 0.128,
    max_buffering: Optional[int] = None,
    path: Optional[str] = None,
    token_provider: Optional[TokenProvider] = None,
    token_expiration: Optional[float] = None,
    encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
    decode_message: Optional[Callable[[bytes], Any]] = None,
    use_jwt: bool = True,
    client_only: bool = False,
) -> CallbackConnection:
    """:meth:`Client.connect` on the default client (configured from the environment).

    >>> conn = fal_realtime.connect("fal-ai/fast-lcm-diffusion", on_result=print)  # doctest: +SKIP
    >>> conn.send({"prompt": "a cat"})  # doctest: +SKIP
    """
    return _client().connect(
        application,
        on_result=on_result,
        on_error=on_error,
        on_state=on_state,
        connection_key=connection_key,
        throttle_interval=throttle_interval,
        max_buffering=max_buffering,
        path=path,
        token_provider=token_provider,
        token_expiration=token_expiration,
        encode_message=encode_message,
        decode_message=decode_message,
        use_jwt=use_jwt,
        client_only=client_only,
    )


# fal_client's module layout: `fal_client.client.*`, `fal_client.auth.*`,
# `fal_client.SyncClient` / `AsyncClient` (imported last: they build on the above).
from . import auth, client  # noqa: E402
from .client import AsyncClient, SyncClient  # noqa: E402
