"""Type stubs of the extension module ``fal_realtime._native`` (the Rust part)."""

from os import PathLike
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple, Union, final

from typing_extensions import Self

__all__: List[str] = [
    "__version__",
    "CORE_VERSION",
    "Client",
    "RealtimeConnection",
    "WsConnection",
    "AsyncConnection",
    "CancelOnDone",
    "OpDone",
    "CallbackConnection",
    "Stats",
    "_settle",
    "_interpreter_exiting",
    "packb",
    "unpackb",
]

__version__: str
CORE_VERSION: str

@final
class Stats:
    """A snapshot of a connection's counters."""

    @property
    def frames_sent(self) -> int:
        """Data frames written to the socket."""
    @property
    def bytes_sent(self) -> int:
        """Payload bytes written."""
    @property
    def frames_received(self) -> int:
        """Data frames read from the socket (results, control and error frames)."""
    @property
    def bytes_received(self) -> int:
        """Payload bytes read."""
    @property
    def results(self) -> int:
        """Results delivered."""
    @property
    def errors(self) -> int:
        """Errors reported."""
    @property
    def connects(self) -> int:
        """Successful connection opens."""
    @property
    def reconnects(self) -> int:
        """Opens after the first one."""
    @property
    def token_fetches(self) -> int:
        """Tokens fetched (initial and refreshes)."""
    @property
    def inputs_replaced(self) -> int:
        """Inputs replaced by a newer one before they were sent."""
    @property
    def last_server_timing(self) -> Optional[float]:
        """The last processing time (seconds) the server reported in a timings message."""
    @property
    def pings_sent(self) -> int:
        """Keepalive pings sent."""
    @property
    def pongs_received(self) -> int:
        """Pongs received (answers to keepalive pings)."""
    @property
    def inputs_dropped_client_only(self) -> int:
        """Inputs dropped because the connection is ``client_only`` on a ``server_side`` client."""
    def to_dict(self) -> Dict[str, Any]:
        """The counters as a dict."""

@final
class RealtimeConnection:
    """A blocking realtime connection, from ``realtime()``.

    Thread-safe: one thread may block in ``recv`` while others ``send``.
    """

    def send(self, arguments: Any) -> None:
        """Send one input, encoded as msgpack (``bytes`` become a msgpack bin)."""
    def send_msgpack(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send pre-encoded msgpack (exactly one value) as is."""
    def recv(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next result; ``None`` once the connection has closed cleanly.

        The server's idle ``TIMEOUT`` raises ``RealtimeError("TIMEOUT", ...)`` once.
        With ``timeout`` (seconds), raises ``FalTimeoutError`` when nothing arrives in time.
        """
    def close(self) -> None:
        """Close the connection (code 1000). Idempotent."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def stats(self) -> Stats:
        """Counters of this connection."""
    def __iter__(self) -> Iterator[Dict[str, Any]]: ...
    def __next__(self) -> Dict[str, Any]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class WsConnection:
    """A blocking raw WebSocket, from ``ws_connect()``: frames in, frames out."""

    def send(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Send ``bytes`` (a binary frame) or ``str`` (a text frame)."""
    def recv(self, timeout: Optional[float] = None, decode: Optional[bool] = None) -> Union[bytes, str]:
        """The next frame. Once the connection has ended: ``ConnectionClosedOK`` after a
        clean close (1000/1001), else ``ClosedError`` with the code (as ``websockets``).

        ``decode`` as in ``websockets``: ``True`` binary frames as ``str``, ``False`` text as ``bytes``.
        """
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; waits up to 1 s for the reply. Idempotent."""
    @property
    def close_code(self) -> Optional[int]:
        """The close code of how the socket ended (1006 without a close frame); ``None`` while open."""
    @property
    def close_reason(self) -> Optional[str]:
        """The reason of the server's close frame; ``None`` while open."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def stats(self) -> Stats:
        """Counters of this connection."""
    def __iter__(self) -> Iterator[Union[bytes, str]]: ...
    def __next__(self) -> Union[bytes, str]: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class CallbackConnection:
    """A callback-style realtime connection, from ``connect()``.

    ``send`` and ``close`` never block and may be called from any thread,
    including from inside callbacks.
    """

    def send(self, arguments: Any) -> None:
        """Queue one input; connection errors go to ``on_error``."""
    def send_msgpack(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Queue pre-encoded msgpack (exactly one value) as is."""
    def close(self) -> None:
        """Close the socket (code 1000) and drop a pending input; the next ``send`` reconnects."""
    def shutdown(self) -> None:
        """Close for good: no callback runs after this returns."""
    @property
    def state(self) -> str:
        """``"idle"``, ``"authenticating"``, ``"connecting"``, ``"open"`` or ``"closed"``."""
    @property
    def stats(self) -> Stats:
        """Counters of this connection."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> bool: ...

@final
class AsyncConnection:
    """The native half of an asyncio connection (wrapped by the public classes)."""

    def send(self, data: Any) -> Optional[Awaitable[None]]:
        """Send; ``None`` when done already, else an awaitable."""
    def send_msgpack(self, data: Any) -> Optional[Awaitable[None]]:
        """Send pre-encoded msgpack; ``None`` when done already, else an awaitable."""
    def recv(self) -> Tuple[bool, Any]:
        """``(True, value)`` when ready now, else ``(False, awaitable)``."""
    def close(self, code: int = 1000, reason: str = ...) -> Optional[Awaitable[None]]:
        """Close after the sends queued before it (given up when none finishes for
        10 s: the socket is shut down, those left fail); ``None`` when done
        already, else an awaitable (also while an earlier close runs)."""
    @property
    def close_code(self) -> Optional[int]:
        """Raw sockets: the close code of how the socket ended; ``None`` while open."""
    @property
    def close_reason(self) -> Optional[str]:
        """Raw sockets: the reason of the server's close frame; ``None`` while open."""
    def _putback(self, fut: Any) -> None: ...
    def _pump(self) -> None:
        """Drive pending operations (called by the event loop: writable)."""
    def _readable(self) -> None:
        """Drive pending operations (called by the event loop: readable)."""
    def _close_timer(self) -> None:
        """A close's deadline (called by the event loop)."""
    def _heartbeat(self) -> None:
        """The keepalive tick while a recv waits (called by the event loop)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def stats(self) -> Stats:
        """Counters of this connection."""

@final
class Client:
    """The native client (wrapped by ``fal_realtime.Client``)."""

    def __new__(
        cls,
        key: Optional[str] = None,
        run_host: Optional[str] = None,
        rest_url: Optional[str] = None,
        ca_file: Union[str, PathLike[str], None] = None,
        allow_insecure_ws: bool = False,
        open_timeout: Optional[float] = None,
        max_message_size: Optional[int] = None,
        ping_interval: Optional[float] = ...,  # 20.0
        ping_timeout: Optional[float] = ...,  # 20.0
        server_side: bool = False,
    ) -> Self: ...
    @property
    def has_credentials(self) -> bool:
        """Whether credentials are configured."""
    @property
    def run_host(self) -> str:
        """The run host in use."""
    @property
    def server_side(self) -> bool:
        """Whether the host was marked server-side."""
    def realtime(
        self,
        app: str,
        *,
        path: Optional[str] = None,
        use_jwt: bool = True,
        max_buffering: Optional[int] = None,
        token_expiration: Optional[float] = None,
        token_provider: Optional[Callable[[str], Any]] = None,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
    ) -> RealtimeConnection:
        """Open a blocking realtime connection."""
    def ws_connect(
        self,
        app: str,
        *,
        path: Optional[str] = None,
        use_jwt: bool = True,
        max_buffering: Optional[int] = None,
        token_expiration: Optional[float] = None,
        token_provider: Optional[Callable[[str], Any]] = None,
    ) -> WsConnection:
        """Open a blocking raw WebSocket."""
    def realtime_async(
        self,
        app: str,
        *,
        path: Optional[str] = None,
        use_jwt: bool = True,
        max_buffering: Optional[int] = None,
        token_expiration: Optional[float] = None,
        token_provider: Optional[Callable[[str], Any]] = None,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
    ) -> Awaitable[AsyncConnection]:
        """Open an asyncio realtime connection."""
    def ws_connect_async(
        self,
        app: str,
        *,
        path: Optional[str] = None,
        use_jwt: bool = True,
        max_buffering: Optional[int] = None,
        token_expiration: Optional[float] = None,
        token_provider: Optional[Callable[[str], Any]] = None,
    ) -> Awaitable[AsyncConnection]:
        """Open an asyncio raw WebSocket."""
    def connect(
        self,
        app: str,
        *,
        on_result: Callable[[Any], Any],
        on_error: Optional[Callable[[Any], Any]] = None,
        on_state: Optional[Callable[[str], Any]] = None,
        connection_key: Optional[str] = None,
        throttle_interval: Optional[float] = 0.128,
        max_buffering: Optional[int] = None,
        path: Optional[str] = None,
        use_jwt: bool = True,
        token_provider: Optional[Callable[[str], Any]] = None,
        token_expiration: Optional[float] = None,
        encode_message: Optional[Callable[[Any], Union[bytes, str]]] = None,
        decode_message: Optional[Callable[[bytes], Any]] = None,
        client_only: bool = False,
    ) -> CallbackConnection:
        """Create a callback-style connection (connects on the first send)."""

@final
class CancelOnDone:
    """Cancels a pending native operation when its asyncio future is cancelled."""

    def __call__(self, fut: Any) -> None: ...

@final
class OpDone:
    """Drops a pending native operation whose asyncio future was cancelled."""

    def __call__(self, fut: Any) -> None: ...

def packb(obj: Any) -> bytes:
    """Encode ``obj`` as msgpack, as the connections do (bytes stay bin, str stays str)."""

def unpackb(data: Union[bytes, bytearray]) -> Any:
    """Decode msgpack into Python objects, as the connections do."""

def _settle(fut: Any, value: Any, is_err: bool) -> None: ...
def _interpreter_exiting() -> None: ...
