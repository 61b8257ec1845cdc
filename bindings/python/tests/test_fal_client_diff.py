"""Differential test: one scenario script (tests/dropin/scenario.py) run with
``fal_client`` 1.0.3 and with ``import fal_realtime as fal_client``, against the
same local emulators. Every observable outcome must be the same, except the
deliberate differences named in DIFFERENCES (each listed in the README's
"Differences from fal_client"), whose exact form on both sides is checked.

fal_client comes from PyPI (``scripts/test-python.sh`` installs ``fal-client==1.0.3``
into the test venv); without it these tests are skipped with the reason.
fal_client 1.0.3 cannot reach a plain local server without patching (it builds
``wss://{FAL_RUN_HOST}/`` at import and posts tokens to the hard-coded
``https://rest.fal.ai``): the scenario's harness replaces those two module
globals for fal_client only, and sets ``FAL_RUN_HOST=ws://…`` /
``FAL_REST_URL=http://…`` for fal_realtime.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

from conftest import KEY, start_emulator, stop

SCENARIO = Path(__file__).parent / "dropin" / "scenario.py"


def _fal_client_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('fal-client'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def strip(v: Any) -> Any:
    """The compared part of an outcome: keys starting with ``_`` are details."""
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not k.startswith("_")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    version = _fal_client_version()
    if not version:
        pytest.skip("fal-client is not installed in this venv (scripts/test-python.sh installs fal-client==1.0.3)")
    assert version == "1.0.3", f"the differential test is written against fal-client 1.0.3, found {version}"
    main = start_emulator("--key", KEY, "--key", "kid:ksecret")
    idle = start_emulator("--session-timeout", "1")
    home = tmp_path_factory.mktemp("fal-home")  # no `fal auth login` tokens for fal_client to find
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
        env.update(FAL_KEY=KEY, FAL_HOME_DIR=str(home))
        runs = []
        for module in ("fal_client", "fal_realtime"):
            out = subprocess.run(
                [sys.executable, str(SCENARIO), module, main.host, idle.host, str(_closed_port())],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert out.returncode == 0, f"{module}: {out.stderr[-3000:]}"
            runs.append(json.loads(out.stdout))
        yield runs[0], runs[1]
    finally:
        stop(main)
        stop(idle)


def _raised(o: Dict[str, Any], *kinds: str) -> bool:
    return "value" not in o and all(k in o["raised"] for k in kinds)


def _check_error_bin(fal: Any, ours: Any) -> None:
    fal = fal if isinstance(fal, list) else [fal]
    ours = ours if isinstance(ours, list) else [ours]
    frame = {"type": "x-fal-error", "error": "INTERNAL_ERROR", "reason": "binary error"}
    assert fal[0] == {"value": frame}, "fal_client hands the binary error frame over as a result"
    assert _raised(ours[0], "RealtimeError") and ours[0]["error"] == "INTERNAL_ERROR"
    assert ours[0]["payload"] == frame and ours[0]["_reason"] == "binary error"
    assert fal[1:] == ours[1:], "the connection stays up in both"


def _check_unauthorized(fal: Any, ours: Any) -> None:
    assert fal[0] == {"value": {"status": "error", "error": "Unauthorized"}}
    assert fal[1] == {"raised": []} and fal[2] == {"value": {"after": "unauthorized"}}
    assert _raised(ours[0], "FalClientHTTPError") and ours[0]["status_code"] == 401
    assert ours[1] == {"raised": ["RealtimeError", "RuntimeError"]}, "the session ended: a send raises"
    assert ours[2] == {"value": None}


def _check_recv_again(fal: Any, ours: Any) -> None:
    assert _raised(fal, "RealtimeError") and fal["error"] == "CONNECTION_CLOSED"
    assert ours == {"value": None}


def _check_text_not_json(fal: Any, ours: Any) -> None:
    assert fal == {"value": {"type": "text", "payload": "hello, not JSON"}}
    assert _raised(ours, "ValueError") and ours["_type"] == "fal_realtime._errors.DecodeError"


def _check_oversized(fal: Any, ours: Any) -> None:
    assert fal == {"value": {"bytes": f"{17 * 1024 * 1024 - 5} bytes"}}  # a bin32: 5 header bytes
    assert _raised(ours, "RealtimeError") and ours["error"] == "CONNECTION_CLOSED"
    assert "1009" in ours["_reason"]


def _check_send_after_end(fal: Any, ours: Any) -> None:
    for when in ("after_end", "after_close"):
        assert fal[when]["_type"] == "websockets.exceptions.ConnectionClosedOK", fal
    assert ours["after_end"]["_type"] == "fal_realtime._errors.ClosedError"
    assert "idle timeout" in ours["after_end"]["_reason"]
    assert ours["after_close"]["_type"] == "fal_realtime._errors.NotConnectedError"


def _check_handshake(fal: Any, ours: Any) -> None:
    assert fal["_type"] == "websockets.exceptions.InvalidStatus" and fal["raised"] == []
    assert ours["_type"] == "fal_realtime._errors.ConnectError" and ours["raised"] == ["ConnectionError"]
    assert fal["_status"] == ours["_status"] == 404


def _check_ws_abnormal(fal: Any, ours: Any) -> None:
    for f, o in zip(fal, ours):
        assert f["_type"] == "websockets.exceptions.ConnectionClosedError" and f["raised"] == []
        assert o["_type"] == "fal_realtime._errors.ClosedError" and "RealtimeError" in o["raised"]
        assert f["code"] == o["code"], "close_code and close_reason agree"
    assert [f["code"] for f in fal] == [[4321, "closing as asked"], [1006, ""]]


#: Deliberate differences: scenario -> (what differs, the check of both sides).
DIFFERENCES: Dict[str, Tuple[str, Callable[[Any, Any], None]]] = {
    "rt_error_in_a_binary_frame": (
        "a binary x-fal-error frame raises RealtimeError (fal_client returns it as a result)",
        _check_error_bin,
    ),
    "art_error_in_a_binary_frame": ("the same, asyncio", _check_error_bin),
    "rt_unauthorized_frame": (
        "{'status': 'error', 'error': 'Unauthorized'} raises AuthError (a FalClientHTTPError, 401) and "
        "ends the session (fal_client returns it as a result and stays connected)",
        _check_unauthorized,
    ),
    "rt_recv_again_after_an_abnormal_close": (
        "an abnormal end is raised once, then recv() returns None (fal_client raises on every recv)",
        _check_recv_again,
    ),
    "rt_text_frame_not_json": (
        "a text frame that is not JSON is a DecodeError, the connection stays up "
        "(fal_client returns {'type': 'text', 'payload': text})",
        _check_text_not_json,
    ),
    "rt_oversized_result": (
        "a message over 64 MiB / a frame over 16 MiB (configurable) ends the connection with close "
        "code 1009 (fal_client accepts any size)",
        _check_oversized,
    ),
    "rt_send_after_the_end": (
        "send on an ended connection raises ClosedError / NotConnectedError "
        "(fal_client: websockets' ConnectionClosedOK)",
        _check_send_after_end,
    ),
    "rt_handshake_rejected": (
        "a rejected handshake is ConnectError (a ConnectionError) with .status "
        "(fal_client: websockets' InvalidStatus)",
        _check_handshake,
    ),
    "ws_abnormal_close": (
        "ws_connect: an abnormal close raises ClosedError (a RealtimeError) "
        "(fal_client: websockets' ConnectionClosedError); close_code/close_reason agree",
        _check_ws_abnormal,
    ),
}

#: Scenarios whose outcomes must agree (every option and error path not listed above).
SAME = [
    "rt_round_trip",
    "rt_options",
    "rt_app_ids",
    "rt_invalid_app_id",
    "rt_invalid_max_buffering",
    "rt_send_bytes",
    "rt_codecs",
    "rt_control_frames",
    "rt_stream",
    "rt_server_error",
    "rt_abnormal_close",
    "rt_normal_close_and_drop",
    "rt_undecodable_frame",
    "rt_idle_timeout",
    "rt_rejected_key",
    "rt_token_endpoint_http_error",
    "rt_credentials_from_the_environment",
    "rt_connection_refused",
    "rt_module_level",
    "art_round_trip",
    "art_errors",
    "art_idle_timeout",
    "art_module_level",
    "ws_frames",
    "ws_options_and_module_level",
    "ws_close_codes",
    "aws_frames_and_close",
    "ws_recv_after_a_clean_close",
]


def test_every_scenario_ran_in_both(outcomes: Tuple[Dict[str, Any], Dict[str, Any]]) -> None:
    fal, ours = outcomes
    assert sorted(fal) == sorted(ours) == sorted(SAME + list(DIFFERENCES))
    failed = {k: v for run in (fal, ours) for k, v in run.items() if isinstance(v, dict) and "scenario_failed" in v}
    assert failed == {}


@pytest.mark.parametrize("name", SAME)
def test_same_outcome(outcomes: Tuple[Dict[str, Any], Dict[str, Any]], name: str) -> None:
    fal, ours = outcomes
    assert strip(ours[name]) == strip(fal[name])


@pytest.mark.parametrize("name", sorted(DIFFERENCES))
def test_named_difference(outcomes: Tuple[Dict[str, Any], Dict[str, Any]], name: str) -> None:
    fal, ours = outcomes
    assert strip(ours[name]) != strip(fal[name]), f"{name} no longer differs: move it to SAME"
    DIFFERENCES[name][1](fal[name], ours[name])


def test_selected_outcomes_are_what_fal_client_users_expect(
    outcomes: Tuple[Dict[str, Any], Dict[str, Any]],
) -> None:
    # A few of the agreed outcomes spelled out, so that "the same" cannot mean "both broken".
    fal, ours = outcomes
    timeout = {"type": "x-fal-error", "error": "TIMEOUT", "reason": "no inputs, reconnect when needed!"}
    for run in (fal, ours):
        first, second, third = run["rt_idle_timeout"]
        assert first == {"value": {"a": 1}}
        assert second["error"] == "TIMEOUT" and second["payload"] == timeout
        assert second["_reason"] == "no inputs, reconnect when needed!"
        assert third == {"value": None}
        # bytes are sent as a msgpack bin, also bytes that hold msgpack: they come back as bytes.
        assert run["rt_send_bytes"] == [{"bytes": b"raw bytes".hex()}, {"bytes": "81a3707265a7656e636f646564"}]
        assert run["rt_rejected_key"]["status_code"] == 401 and run["rt_rejected_key"]["detail_in_message"]
        assert not run["rt_rejected_key"]["key_in_message"]
        assert run["rt_credentials_from_the_environment"]["missing"]["names_the_variables"]
        assert run["rt_invalid_app_id"]["str"] == (
            "Invalid app id: not-an-app-id. Must be in the format <appOwner>/<appId>"
        )
        assert run["ws_close_codes"][0] == [4000, "bye"] and run["ws_close_codes"][1] == [1000, ""]
        assert run["ws_recv_after_a_clean_close"]["returned"] is False
    # recv() after a clean close raises ConnectionClosedOK in both: websockets' class, and ours.
    assert fal["ws_recv_after_a_clean_close"]["_type"] == "websockets.exceptions.ConnectionClosedOK"
    assert ours["ws_recv_after_a_clean_close"]["_type"] == "fal_realtime._errors.ConnectionClosedOK"
