"""The exceptions of fal_realtime: one class per kind of failure.

Every exception derives from :class:`FalRealtimeError`. Server errors are
:class:`RealtimeError` (as in ``fal_client``), carrying ``error``, ``reason``
and ``payload``. Failures of the token endpoint (:class:`AuthError`,
:class:`HttpError`) are also :class:`FalClientHTTPError` (``status_code``,
``response``), so ``except fal_client.FalClientHTTPError`` keeps catching a
rejected key. No message ever contains a token or an API key.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` and `json` load lazily (see `__init__`)
    from typing import Any, Dict, Optional

__all__ = [
    "FalClientError",
    "FalClientHTTPError",
    "HTTPResponse",
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


class HTTPResponse:
    """What the token endpoint answered, for :attr:`FalClientHTTPError.response`.

    A small stand-in for the ``httpx.Response`` of ``fal_client``: ``status_code``,
    ``text``, ``content``, ``headers`` (empty: the headers are not kept) and ``json()``.
    """

    __slots__ = ("status_code", "text", "headers")

    def __init__(self, status_code: Optional[int], text: str = "") -> None:
        self.status_code = status_code
        self.text = text
        self.headers: Dict[str, str] = {}

    @property
    def content(self) -> bytes:
        """The body as UTF-8 bytes."""
        return self.text.encode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        import json

        return json.loads(self.text)

    def __repr__(self) -> str:
        return f"<HTTPResponse [{self.status_code}]>"


def _json_object(body: Optional[str]) -> Optional[Dict[str, Any]]:
    """An error body parsed as a JSON object; ``None`` when it is none."""
    if not body:
        return None
    import json

    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _error_type(body: Optional[str]) -> Optional[str]:
    parsed = _json_object(body)
    value = parsed.get("error_type") if parsed is not None else None
    return value if isinstance(value, str) else None


class FalClientError(FalRealtimeError):
    """``fal_client.FalClientError``: the base of the HTTP failures (:class:`FalClientHTTPError`)."""

    kind = "http"


class FalClientHTTPError(FalClientError):
    """An HTTP failure, as ``fal_client.FalClientHTTPError``: ``message``,
    ``status_code``, ``response_headers``, ``response`` and ``error_type``.

    :class:`AuthError` (a rejected key: ``status_code`` 401 or 403) and
    :class:`HttpError` are subclasses, so ``except FalClientHTTPError`` catches
    what ``fal_client`` raises there. ``response`` is an :class:`HTTPResponse`
    holding the body; ``response_headers`` is empty. Takes ``fal_client``'s
    constructor arguments too.
    """

    def __init__(
        self,
        message: str = "",
        status_code: Optional[int] = None,
        response_headers: Optional[Dict[str, str]] = None,
        response: Any = None,
        error_type: Optional[str] = None,
        *,
        status: Optional[int] = None,
        body: Optional[str] = None,
    ) -> None:
        if status is None:
            status = status_code
        super().__init__(message, status=status, body=body)
        self.status_code = status
        self.response_headers: Dict[str, str] = dict(response_headers or {})
        self.response: Any = response if response is not None else HTTPResponse(status, body or "")
        self.error_type = error_type if error_type is not None else _error_type(body)


class AuthError(FalClientHTTPError):
    """Authentication failed: the token endpoint refused the key (``status`` 401/403),
    or the realtime server answered ``Unauthorized`` (``status`` 401).

    Also a :class:`FalClientHTTPError` (``status_code``, ``response``), as the
    rejected key is in ``fal_client``."""

    kind = "auth"


class HttpError(FalClientHTTPError):
    """The token endpoint failed with an HTTP status other than an auth failure.

    Also a :class:`FalClientHTTPError` (``status_code``, ``response``)."""

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


class ConnectionClosedOK(ClosedError):
    """``recv()`` of a raw WebSocket (``ws_connect``) after it closed cleanly: both
    close frames said 1000 or 1001 (also when you closed it), as
    ``websockets.exceptions.ConnectionClosedOK`` (what ``fal_client``'s ``ws_connect``
    raises then). ``code`` is the close code. Iteration (``for frame in ws``) ends
    without it. Realtime connections' ``recv`` returns ``None`` at a clean end instead.
    """


def _ws_end(code: Optional[int], reason: Optional[str]) -> ClosedError:
    """What ``recv()`` of a raw WebSocket raises once it has ended (called by the extension):
    :class:`ConnectionClosedOK` after a clean close, else :class:`ClosedError` with the code,
    on every call (as ``websockets``)."""
    code = 1000 if code is None else code
    detail = f"code {code}, reason {reason!r}" if reason else f"code {code}"
    if code in (1000, 1001):
        return ConnectionClosedOK(f"the WebSocket is closed ({detail})", code)
    return ClosedError(f"the WebSocket closed abnormally ({detail})", code)


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
        payload: Dict[str, Any] = _json_object(body) or {}
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
