"""``fal_client.client``'s realtime names, for ``import fal_realtime as fal_client``.

:class:`SyncClient` and :class:`AsyncClient` take ``fal_client``'s constructor
arguments (``key=None, default_timeout=120.0``) and offer its realtime methods
with the same keyword arguments and defaults: ``realtime(...)`` and
``ws_connect(...)``. Everything else ``fal_client`` clients do (queue requests,
uploads) is not part of this package.
"""

from __future__ import annotations

import math
import threading
TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads lazily (see `__init__`)
    from typing import Any, AsyncContextManager, Callable, ContextManager, Optional, Union

    from . import TokenProvider

from . import (
    REALTIME_OPEN_TIMEOUT,
    REALTIME_TOKEN_EXPIRATION_SECONDS,
    AsyncRealtimeConnection,
    AsyncWsConnection,
    Client,
    RealtimeConnection,
    WsConnection,
)
from ._errors import FalClientError, FalClientHTTPError, RealtimeError

__all__ = [
    "SyncClient",
    "AsyncClient",
    "RealtimeConnection",
    "AsyncRealtimeConnection",
    "RealtimeError",
    "FalClientError",
    "FalClientHTTPError",
    "REALTIME_TOKEN_EXPIRATION_SECONDS",
    "REALTIME_OPEN_TIMEOUT",
]

_lock = threading.Lock()


def _open_timeout(default_timeout: float) -> float:
    if (
        isinstance(default_timeout, bool)
        or not isinstance(default_timeout, (int, float))
        or not math.isfinite(default_timeout)
        or default_timeout <= 0
    ):
        raise ValueError(f"default_timeout must be a positive number of seconds, got {default_timeout!r}")
    # fal_client bounds the token request by `default_timeout` and the
    # handshake by 90 s; here one timeout covers both.
    return float(default_timeout) + REALTIME_OPEN_TIMEOUT


class _ClientBase:
    """What :class:`SyncClient` and :class:`AsyncClient` share: ``fal_client``'s
    two constructor arguments, and the :class:`fal_realtime.Client` built from
    them on first use (when ``fal_client`` reads its credentials too)."""

    __slots__ = ("_key", "_default_timeout", "_native")

    def __init__(self, key: Optional[str] = None, default_timeout: float = 120.0) -> None:
        _open_timeout(default_timeout)
        self._key = key
        self._default_timeout = float(default_timeout)
        self._native: Optional[Client] = None

    @property
    def key(self) -> Optional[str]:
        """The API key given, or ``None`` (then ``FAL_KEY`` or ``FAL_KEY_ID`` +
        ``FAL_KEY_SECRET``, read on first use)."""
        return self._key

    @property
    def default_timeout(self) -> float:
        """Seconds allowed for the token request (opening a connection gets
        ``default_timeout + 90`` s in all, the handshake's 90 s included)."""
        return self._default_timeout

    def _client(self) -> Client:
        # Credentials and hosts (FAL_RUN_HOST, FAL_REST_URL) are read on first use.
        c = self._native
        if c is None:
            with _lock:
                c = self._native
                if c is None:
                    c = Client(key=self._key, open_timeout=_open_timeout(self._default_timeout))
                    self._native = c
        return c

    def __repr__(self) -> str:
        # Never the key (as fal_client's repr).
        return f"{type(self).__name__}(default_timeout={self._default_timeout!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _ClientBase)
        return (self._key, self._default_timeout) == (other._key, other._default_timeout)

    def __hash__(self) -> int:
        return hash((type(self), self._key, self._default_timeout))


class SyncClient(_ClientBase):
    """``fal_client.SyncClient``'s realtime part: blocking connections.

    Args:
        key: the API key; default ``FAL_KEY`` (or ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``),
            read on first use. Never shown in ``repr``.
        default_timeout: seconds allowed for the token request (as in
            ``fal_client``); with its 90 s handshake timeout this bounds opening a
            connection (``default_timeout + 90`` in all).

    Hosts come from ``FAL_RUN_HOST`` and ``FAL_REST_URL``; use
    :class:`fal_realtime.Client` for the other settings.
    """

    __slots__ = ()

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
    ) -> ContextManager[RealtimeConnection]:
        """Open a realtime connection (``with client.realtime(app) as conn``), as
        ``fal_client.SyncClient.realtime``; see :meth:`fal_realtime.Client.realtime`."""
        return self._client().realtime(
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
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        token_provider: Optional[TokenProvider] = None,
    ) -> ContextManager[WsConnection]:
        """Open a raw WebSocket (``with client.ws_connect(app) as ws``), as
        ``fal_client.SyncClient.ws_connect``; see :meth:`fal_realtime.Client.ws_connect`."""
        return self._client().ws_connect(
            application,
            use_jwt=use_jwt,
            path=path,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
        )


class AsyncClient(_ClientBase):
    """``fal_client.AsyncClient``'s realtime part: asyncio connections.

    Same arguments as :class:`SyncClient`; ``realtime`` and ``ws_connect`` are
    ``async with`` context managers.
    """

    __slots__ = ()

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
    ) -> AsyncContextManager[AsyncRealtimeConnection]:
        """Open an asyncio realtime connection (``async with client.realtime(app) as
        conn``), as ``fal_client.AsyncClient.realtime``."""
        return self._client().realtime_async(
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
        self,
        application: str,
        *,
        use_jwt: bool = True,
        path: str = "",
        max_buffering: Optional[int] = None,
        token_expiration: int = REALTIME_TOKEN_EXPIRATION_SECONDS,
        token_provider: Optional[TokenProvider] = None,
    ) -> AsyncContextManager[AsyncWsConnection]:
        """Open an asyncio raw WebSocket (``async with client.ws_connect(app) as
        ws``), as ``fal_client.AsyncClient.ws_connect``."""
        return self._client().ws_connect_async(
            application,
            use_jwt=use_jwt,
            path=path,
            max_buffering=max_buffering,
            token_expiration=token_expiration,
            token_provider=token_provider,
        )
