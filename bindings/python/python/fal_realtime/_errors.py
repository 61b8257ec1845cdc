"""The exceptions of fal_realtime: one class per kind of failure.

Every exception derives from :class:`FalRealtimeError`. Server errors are
:class:`RealtimeError` (as in ``fal_client``), carrying ``error``, ``reason``
and ``payload``. No message ever contains a token or an API key.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

__all__ = [
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
    "DecodeError",
    "EncodeError",
    "NotConnectedError",
    "InternalError",
]


class FalRealtimeError(Exception):
    """Base class of every error raised (or passed to ``on_error``) by fal_realtime.

    Attributes:
        message: what went wrong, in words a person can act on.
        kind: a short stable name of the kind of failure (e.g. ``"server"``).
        status: the HTTP status, for token-endpoint and handshake failures.
        body: what the server said (an HTTP body, or the JSON of an error frame).
        close_code: the WebSocket close code where the connection ended (e.g. 1006
            when it dropped, 1009 for an oversized message, 1011 when the server
            stopped answering keepalive pings), else ``None``.
    """

    kind: str = "internal"
    close_code: Optional[int]

    def __init__(
        self,
        message: str = "",
        *,
        status: Optional[int] = None,
        body: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.close_code = None

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(FalRealtimeError, ValueError):
    """An argument is invalid: a bad app id, ``max_buffering`` outside 1..60, a bad URL."""

    kind = "invalid_argument"


class CredentialsError(FalRealtimeError):
    """No credentials: set ``FAL_KEY`` (or ``FAL_KEY_ID`` and ``FAL_KEY_SECRET``), pass
    ``key=`` to :class:`fal_realtime.Client`, or pass a ``token_provider``."""

    kind = "credentials"


#: The name ``fal_client`` uses for missing credentials.
MissingCredentialsError = CredentialsError


class AuthError(FalRealtimeError):
    """Authentication failed: the token endpoint refused the key (``status`` 401/403),
    or the realtime server answered ``Unauthorized``."""

    kind = "auth"


class HttpError(FalRealtimeError):
    """The token endpoint failed with an HTTP status other than an auth failure."""

    kind = "http"


class TokenProviderError(FalRealtimeError):
    """The ``token_provider`` raised, returned no ``str``, or returned an empty token."""

    kind = "token_provider"


class ConnectError(FalRealtimeError, ConnectionError):
    """The TCP connection or the WebSocket handshake failed."""

    kind = "connect"


class TlsError(ConnectError):
    """TLS failed (e.g. an untrusted certificate; see ``ca_file``)."""

    kind = "tls"


class FalTimeoutError(FalRealtimeError, TimeoutError):
    """Something did not finish in time: opening the connection (token fetch and
    handshake), or ``recv(timeout=...)``."""

    kind = "timeout"


class RealtimeError(FalRealtimeError, RuntimeError):
    """The realtime endpoint sent an error (``x-fal-error``), e.g. ``INTERNAL_ERROR``.

    Same constructor and attributes as ``fal_client.RealtimeError``.

    Attributes:
        error: the error code, e.g. ``"INTERNAL_ERROR"``.
        reason: the server's explanation (``""`` if none).
        payload: the whole error message as a dict.
    """

    kind = "server"

    def __init__(
        self,
        error: str,
        reason: Optional[str] = None,
        payload: Optional[Dict[str, Any]] = None,
        *,
        status: Optional[int] = None,
        body: Optional[str] = None,
    ) -> None:
        self.error = error
        self.reason = reason or ""
        self.payload: Dict[str, Any] = payload or {}
        message = error if not self.reason else f"{error}: {self.reason}"
        super().__init__(message, status=status, body=body)


class ClosedError(RealtimeError):
    """The connection closed abnormally: a close code other than 1000/1001 (``code``),
    or the TCP connection dropped (``code`` 1006).

    A :class:`RealtimeError` with ``error == "CONNECTION_CLOSED"``, like ``fal_client``.
    """

    kind = "closed"

    def __init__(
        self,
        reason: str = "",
        code: Optional[int] = None,
        *,
        status: Optional[int] = None,
        body: Optional[str] = None,
    ) -> None:
        self.code = code
        super().__init__("CONNECTION_CLOSED", reason, {"code": code}, status=status, body=body)
        self.close_code = code


class DecodeError(FalRealtimeError, ValueError):
    """A frame from the server could not be decoded (or ``decode_message`` raised).
    The connection stays up."""

    kind = "decode"


class EncodeError(FalRealtimeError, TypeError):
    """An input could not be encoded as msgpack (or ``encode_message`` failed)."""

    kind = "encode"


class NotConnectedError(FalRealtimeError):
    """The connection was closed or shut down by the caller."""

    kind = "not_connected"


class InternalError(FalRealtimeError):
    """A bug or an unexpected state in fal_realtime."""

    kind = "internal"


_BY_KIND = {
    cls.kind: cls
    for cls in (
        InvalidArgumentError,
        CredentialsError,
        AuthError,
        HttpError,
        TokenProviderError,
        ConnectError,
        TlsError,
        FalTimeoutError,
        NotConnectedError,
        DecodeError,
        EncodeError,
        InternalError,
    )
}


def _from_core(
    kind: str,
    message: str,
    status: Optional[int],
    close_code: Optional[int],
    body: Optional[str],
) -> FalRealtimeError:
    """Build the exception for an error of the Rust core (called by the extension)."""
    if kind == "server":
        payload: Dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
                if isinstance(parsed, dict):
                    payload = parsed
            except ValueError:
                pass
        error = payload.get("error")
        reason = payload.get("reason")
        if not isinstance(error, str):
            error, _, rest = message.partition(": ")
            reason = rest or None
        return RealtimeError(
            error,
            reason if isinstance(reason, str) else None,
            payload,
            status=status,
            body=body,
        )
    if kind == "closed":
        exc: FalRealtimeError = ClosedError(message, close_code, status=status, body=body)
    else:
        exc = _BY_KIND.get(kind, InternalError)(message, status=status, body=body)
    exc.close_code = close_code
    return exc
