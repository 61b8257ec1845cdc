"""A program that uses only the blocking and callback styles never loads
asyncio (with ssl, ~11 MiB of a process's memory): it is imported lazily,
only by the asyncio API and by async token providers; nor ssl (the
client's TLS is rustls). Nor `typing`, `logging` and `json` (about 3 MiB
together): only type checkers import `typing`, and `logging` loads with the
first record the library logs."""

import os
import subprocess
import sys

import pytest

from conftest import KEY, Emulator

SCRIPT = r"""
import sys, threading
import fal_realtime

client = fal_realtime.Client(key=sys.argv[2], run_host="ws://" + sys.argv[1], rest_url="http://" + sys.argv[1])
with client.realtime("me/echo") as conn:
    conn.send({"prompt": "sync"})
    assert conn.recv(timeout=30)["prompt"] == "sync"
got = threading.Event()
with client.connect("me/echo", on_result=lambda r: got.set()) as conn:
    conn.send({"prompt": "callback"})
    assert got.wait(30)
print("asyncio loaded:", "asyncio" in sys.modules, "ssl loaded:", "ssl" in sys.modules)
print("also loaded:", sorted(m for m in ("typing", "logging", "json") if m in sys.modules))
"""

# `logging` configured after the library was imported and used: its records
# still arrive (the bridge to `logging` is made by the first record).
LATE_LOGGING = r"""
import sys
import fal_realtime

client = fal_realtime.Client(key=sys.argv[2], run_host="ws://" + sys.argv[1], rest_url="http://" + sys.argv[1])
with client.realtime("me/echo") as conn:
    conn.send({"prompt": "one"})
    assert conn.recv(timeout=30)["prompt"] == "one"
assert "logging" not in sys.modules
import logging
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
with client.realtime("me/echo") as conn:
    conn.send({"prompt": "two"})
    assert conn.recv(timeout=30)["prompt"] == "two"
"""


# An asyncio program: its connections open on the library's one thread for
# opens and are then driven by the event loop's thread; the shared runtime
# (two worker threads) is never started.
ASYNCIO_THREADS = r"""
import asyncio, os, sys
import fal_realtime

async def main():
    client = fal_realtime.Client(key=sys.argv[2], run_host="ws://" + sys.argv[1], rest_url="http://" + sys.argv[1])

    async def one(i):
        async with client.realtime_async("me/echo") as conn:
            await conn.send({"prompt": str(i)})
            assert (await conn.recv(timeout=30))["prompt"] == str(i)

    await asyncio.gather(*(one(i) for i in range(4)))
    async with client.ws_connect_async("owner/echo") as ws:
        await ws.send("x")
        assert await ws.recv(timeout=30) == "x"

asyncio.run(main())
names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print("library threads:", [n for n in names if n.startswith("fal-realtime")])
"""

def test_sync_and_callback_styles_do_not_import_asyncio(emu: Emulator) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, emu.host, KEY], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "asyncio loaded: False ssl loaded: False" in out.stdout, out.stdout + out.stderr
    assert "also loaded: []" in out.stdout, out.stdout + out.stderr


def test_logging_configured_late_gets_the_records(emu: Emulator) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LATE_LOGGING, emu.host, KEY], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "fal_realtime.open DEBUG opening ws://" in out.stdout, out.stdout + out.stderr


def test_type_hints_resolve_with_the_typing_names() -> None:
    # What the README says `typing.get_type_hints` needs (`typing` is not
    # imported by the package at run time).
    import typing

    import fal_realtime

    assert fal_realtime.TokenProvider is not None
    hints = typing.get_type_hints(fal_realtime.Client.realtime, localns=vars(typing))
    assert hints["use_jwt"] is bool
    assert typing.get_type_hints(fal_realtime.ExtType) == {"code": int, "data": bytes}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="lists threads through /proc")
def test_asyncio_programs_start_one_library_thread(emu: Emulator) -> None:
    out = subprocess.run(
        [sys.executable, "-c", ASYNCIO_THREADS, emu.host, KEY], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    # Thread names are cut to 15 bytes by the kernel.
    assert "library threads: ['fal-realtime-op']" in out.stdout, out.stdout + out.stderr
