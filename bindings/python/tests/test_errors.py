"""Every kind of error, as the exception class a caller would catch."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import fal_realtime
from fal_realtime import Client


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_invalid_arguments(client: Client) -> None:
    for bad in (0, 61, -1, True, 2.5, "3"):
        with pytest.raises(fal_realtime.InvalidArgumentError) as ei:
            with client.realtime("owner/echo", max_buffering=bad):  # type: ignore[arg-type]
                pass
        assert isinstance(ei.value, ValueError)
        assert "max_buffering" in str(ei.value)
    with pytest.raises(fal_realtime.InvalidArgumentError, match="Invalid app id"):
        with client.realtime("not-an-app-id"):
            pass
    with pytest.raises(fal_realtime.InvalidArgumentError, match="allow_insecure_ws=True"):
        Client(run_host="ws://emulator.example:1")  # plain ws to another host needs allow_insecure_ws
    with pytest.raises(fal_realtime.InvalidArgumentError, match="allow_insecure_ws=True"):
        Client(rest_url="http://10.0.0.1:1")
    with pytest.raises(fal_realtime.InvalidArgumentError):
        Client(ca_file="/nonexistent/ca.pem")
    with pytest.raises(fal_realtime.InvalidArgumentError):
        client.connect("owner/echo", on_result=print, max_buffering=100)


def test_missing_credentials(emu: Any) -> None:
    client = Client(run_host=f"ws://{emu.host}", rest_url=f"http://{emu.host}", allow_insecure_ws=True)
    with pytest.raises(fal_realtime.CredentialsError) as ei:
        with client.realtime("owner/echo"):
            pass
    # The variables named as fal_client names them.
    assert "Set FAL_KEY (or FAL_KEY_ID/FAL_KEY_SECRET)" in str(ei.value)
    assert fal_realtime.MissingCredentialsError is fal_realtime.CredentialsError


def test_bad_key_is_an_auth_error_without_the_key(emu: Any) -> None:
    client = emu.client(key="super-secret-wrong-key")
    with pytest.raises(fal_realtime.AuthError) as ei:
        with client.realtime("owner/echo"):
            pass
    assert ei.value.status == 401
    assert "super-secret-wrong-key" not in str(ei.value) + repr(ei.value) + str(ei.value.body)
    # Also fal_client's HTTP error: status_code, the response body, the server's detail.
    e = ei.value
    assert isinstance(e, fal_realtime.FalClientHTTPError) and isinstance(e, fal_realtime.FalClientError)
    assert e.status_code == 401 and e.response.status_code == 401
    assert e.response.json() == {"detail": "Unauthorized"}
    assert str(e).endswith(": Unauthorized"), str(e)


def test_unauthorized_from_the_realtime_server(emu: Any) -> None:
    client = emu.client(key="wrong")
    with client.realtime("owner/echo", token_provider=lambda app: "not-a-valid-token") as conn:
        conn.send({"x": 1})
        with pytest.raises(fal_realtime.AuthError):
            conn.recv(timeout=10)


def test_unauthorized_control_message(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "unauthorized"})
        with pytest.raises(fal_realtime.AuthError) as ei:
            conn.recv(timeout=10)
        assert ei.value.status == 401


def test_token_endpoint_http_error(emu: Any) -> None:
    client = emu.client(rest_url=f"http://{emu.host}/no-such-prefix")
    with pytest.raises(fal_realtime.HttpError) as ei:
        with client.realtime("owner/echo"):
            pass
    assert ei.value.status == 404
    assert isinstance(ei.value, fal_realtime.FalClientHTTPError) and ei.value.status_code == 404


def test_token_provider_error(emu: Any) -> None:
    client = emu.client()

    def provider(app: str) -> str:
        raise LookupError("vault unavailable")

    with pytest.raises(fal_realtime.TokenProviderError, match="vault unavailable"):
        with client.realtime("owner/echo", token_provider=provider):
            pass
    with pytest.raises(fal_realtime.TokenProviderError):
        with client.realtime("owner/echo", token_provider=lambda app: 42):  # type: ignore[arg-type,return-value]
            pass


def test_connect_error(emu: Any) -> None:
    port = closed_port()
    client = Client(key="k", run_host=f"ws://127.0.0.1:{port}", rest_url=f"http://{emu.host}", allow_insecure_ws=True)
    with pytest.raises(fal_realtime.ConnectError) as ei:
        with client.realtime("owner/echo", use_jwt=False):
            pass
    assert isinstance(ei.value, ConnectionError)


def test_handshake_rejected_is_a_connect_error(client: Client) -> None:
    # Not a realtime path of the emulator: the handshake gets 404.
    with pytest.raises(fal_realtime.ConnectError) as ei:
        with client.ws_connect("owner/app", path="/not-realtime"):
            pass
    assert ei.value.status == 404


def test_tls_untrusted_then_trusted(tls_emu: Any, tls_dir: Path) -> None:
    untrusted = Client(key="test-key", run_host=tls_emu.host, rest_url=f"https://{tls_emu.host}")
    with pytest.raises(fal_realtime.TlsError) as ei:
        with untrusted.realtime("owner/echo"):
            pass
    assert isinstance(ei.value, fal_realtime.ConnectError)
    trusted = Client(
        key="test-key",
        run_host=tls_emu.host,
        rest_url=f"https://{tls_emu.host}",
        ca_file=str(tls_dir / "ca.pem"),
    )
    with trusted.realtime("owner/echo") as conn:
        conn.send({"over": "tls"})
        assert conn.recv(timeout=10) == {"over": "tls"}


def test_module_level_functions_use_the_environment(tls_emu: Any, tls_dir: Path) -> None:
    # In a fresh process, as a program configured from its environment: the
    # system roots (and SSL_CERT_FILE with them) are read once per process.
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        FAL_KEY="test-key",
        FAL_RUN_HOST=tls_emu.host,
        FAL_REST_URL=f"https://{tls_emu.host}",
        SSL_CERT_FILE=str(tls_dir / "ca.pem"),
    )
    script = (
        "import fal_realtime\n"
        "with fal_realtime.realtime('owner/echo') as conn:\n"
        "    conn.send({'env': True})\n"
        "    print(conn.recv(timeout=10))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "{'env': True}"


def test_plain_loopback_hosts_from_the_environment_need_no_flag(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token sent in clear to this machine never leaves it: env-configured
    # code reaches a local emulator without allow_insecure_ws.
    monkeypatch.setenv("FAL_KEY", "test-key")
    monkeypatch.setenv("FAL_RUN_HOST", f"ws://{emu.host}")
    monkeypatch.setenv("FAL_REST_URL", f"http://{emu.host}")
    monkeypatch.setattr(fal_realtime, "_default_client", None)
    with fal_realtime.realtime("owner/echo") as conn:
        conn.send({"loopback": True})
        assert conn.recv(timeout=10) == {"loopback": True}
    port = emu.host.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"[::1]:{port}"):
        Client(key="k", run_host=f"ws://{host}", rest_url=f"http://{host}")  # accepted
    monkeypatch.setenv("FAL_RUN_HOST", "ws://192.168.0.1:8080")
    with pytest.raises(fal_realtime.InvalidArgumentError, match="allow_insecure_ws"):
        Client()


def test_open_timeout(silent_server: str) -> None:
    client = Client(key="k", run_host=f"ws://{silent_server}", allow_insecure_ws=True, open_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(fal_realtime.FalTimeoutError) as ei:
        with client.realtime("owner/echo", use_jwt=False):
            pass
    assert isinstance(ei.value, TimeoutError)
    assert time.monotonic() - started < 5


async def test_cancelling_a_pending_connect(silent_server: str) -> None:
    client = Client(key="k", run_host=f"ws://{silent_server}", allow_insecure_ws=True)

    async def open_it() -> None:
        async with client.realtime_async("owner/echo", use_jwt=False):
            pass

    task = asyncio.ensure_future(open_it())
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_server_error(client: Client) -> None:
    with client.realtime("owner/fail") as conn:
        conn.send({"x": 1})
        with pytest.raises(fal_realtime.RealtimeError) as ei:
            conn.recv(timeout=10)
        e = ei.value
        assert e.error == "INTERNAL_ERROR" and "boom" in e.reason
        assert e.payload["type"] == "x-fal-error"
        assert not isinstance(e, fal_realtime.ClosedError)
        # fail closes after the error: then a clean end.
        assert conn.recv(timeout=10) is None


def test_server_error_in_a_binary_frame(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "error_bin"})
        with pytest.raises(fal_realtime.RealtimeError, match="binary error"):
            conn.recv(timeout=10)
        conn.send({"still": "up"})
        assert conn.recv(timeout=10) == {"still": "up"}


def test_abnormal_closes(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "close", "code": 4001})
        with pytest.raises(fal_realtime.ClosedError) as ei:
            conn.recv(timeout=10)
        assert ei.value.code == 4001
        assert ei.value.error == "CONNECTION_CLOSED"
        assert isinstance(ei.value, fal_realtime.RealtimeError)
    with client.realtime("owner/control") as conn:
        conn.send({"do": "drop"})
        with pytest.raises(fal_realtime.ClosedError) as ei:
            conn.recv(timeout=10)
        assert ei.value.code == 1006


def test_undecodable_frame_keeps_the_connection(client: Client) -> None:
    with client.realtime("owner/control") as conn:
        conn.send({"do": "garbage"})
        with pytest.raises(fal_realtime.DecodeError):
            conn.recv(timeout=10)
        assert conn.recv(timeout=10) == {"do": "garbage"}


def test_decode_message_raising_is_a_decode_error(client: Client) -> None:
    def decode(data: bytes) -> Any:
        raise ValueError("cannot decode this")

    with client.realtime("owner/echo", decode_message=decode) as conn:
        conn.send({"x": 1})
        with pytest.raises(fal_realtime.DecodeError, match="cannot decode this"):
            conn.recv(timeout=10)


def test_encode_errors(client: Client) -> None:
    with client.realtime("owner/echo") as conn:
        with pytest.raises(fal_realtime.EncodeError) as ei:
            conn.send({"x": object()})
        assert isinstance(ei.value, TypeError)
        with pytest.raises(fal_realtime.EncodeError):
            conn.send({"big": 2**64})
        with pytest.raises(fal_realtime.EncodeError):
            conn.send({"bad": "\ud800"})
        # Nothing was sent; the connection is fine.
        conn.send({"ok": 1})
        assert conn.recv(timeout=10) == {"ok": 1}
    with client.realtime("owner/echo", encode_message=lambda m: 123) as conn:  # type: ignore[arg-type,return-value]
        with pytest.raises(fal_realtime.EncodeError):
            conn.send({"x": 1})


def test_not_connected(client: Client) -> None:
    with client.realtime("owner/echo") as conn:
        pass
    with pytest.raises(fal_realtime.NotConnectedError):
        conn.send({"x": 1})


def test_every_error_is_a_fal_realtime_error() -> None:
    names = [n for n in fal_realtime.__all__ if n.endswith("Error")]
    assert len(names) >= 15
    for n in names:
        cls = getattr(fal_realtime, n)
        assert issubclass(cls, fal_realtime.FalRealtimeError), n
        assert cls.__doc__, n
