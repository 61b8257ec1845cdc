"""Helpers the extension module calls back into (not public API)."""

from __future__ import annotations

import collections

# `typing` and `logging` load lazily (type checkers only, and the first log
# record): together about 3 MiB of a process that never needs them.
TYPE_CHECKING = False
if TYPE_CHECKING:  # asyncio and inspect load lazily: asyncio (with ssl) alone is ~11 MiB
    import asyncio
    import logging
    from typing import Any, Awaitable, Callable, NamedTuple, Optional, Union

#: How long a token provider running on another thread's event loop may take.
TOKEN_PROVIDER_TIMEOUT = 60.0

if TYPE_CHECKING:

    class ExtType(NamedTuple):
        code: int
        data: bytes

else:
    ExtType = collections.namedtuple("ExtType", ["code", "data"])
    # As `typing.NamedTuple` would set them (`typing.get_type_hints` works).
    ExtType.__annotations__ = {"code": "int", "data": "bytes"}
ExtType.__doc__ = """A msgpack extension value: ``code`` (-128..127) and raw ``data``.

Decoded results carry one where the server sent an ext value; pass one to
``send`` to encode an ext value.
"""


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("fal_realtime")


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw


def _call_token_provider(
    provider: Callable[[str], Union[str, Awaitable[str]]],
    app: str,
    loop: Optional[asyncio.AbstractEventLoop],
) -> str:
    """Call a sync or async token provider from a worker thread; return the token."""
    result = provider(app)
    if not isinstance(result, str):
        import inspect  # lazily, as asyncio: only async providers need them

        if inspect.isawaitable(result):
            import asyncio

            if loop is not None and loop.is_running() and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(_await(result), loop)
                result = future.result(TOKEN_PROVIDER_TIMEOUT)
            else:
                result = asyncio.run(_await(result))
    if not isinstance(result, str):
        raise TypeError(f"the token provider returned {type(result).__name__}, expected str")
    return result


def _log_callback_error(which: str, exc: BaseException) -> None:
    """Log an exception raised inside a user callback; the connection goes on."""
    _logger().error(
        "exception in the %s callback (the connection keeps going)",
        which,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _log_connection_error(exc: BaseException) -> None:
    """Log a connection error when no ``on_error`` callback was given."""
    _logger().warning("realtime connection error: %s", exc)
