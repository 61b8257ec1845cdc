"""The package surface: docstrings everywhere, logging through `logging`, the wheel's shape."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

import fal_realtime
from fal_realtime import Client

DUNDERS = {"__iter__", "__next__", "__enter__", "__exit__", "__aiter__", "__anext__", "__aenter__", "__aexit__"}


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in fal_realtime.__all__:
        obj = getattr(fal_realtime, name)
        if name.startswith("__") or name == "TokenProvider":  # a typing alias
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") and attr not in DUNDERS:
                    continue
                if not getattr(value, "__doc__", None):
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_typed_package_files_are_installed() -> None:
    pkg = Path(fal_realtime.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_native.pyi").is_file()
    # One abi3 extension for every CPython >= 3.9.
    assert any(p.name.endswith(".abi3.so") for p in pkg.iterdir()), list(pkg.iterdir())


def test_core_log_records_reach_python_logging(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fal_realtime")
    with client.realtime("owner/echo") as conn:
        conn.send({"x": 1})
        assert conn.recv(timeout=10) == {"x": 1}
    records = [r for r in caplog.records if r.name.startswith("fal_realtime")]
    opening = [r for r in records if "opening" in r.getMessage()]
    assert opening, [r.getMessage() for r in records]
    for r in records:
        # Tokens (the emulator's start with "emu.") and keys never reach the logs.
        assert "emu." not in r.getMessage()
        assert "test-key" not in r.getMessage()


def test_log_level_changes_apply_immediately(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fal_realtime")
    with client.realtime("owner/echo"):
        pass
    assert not [r for r in caplog.records if r.name.startswith("fal_realtime") and r.levelno < logging.WARNING]
    caplog.set_level(logging.DEBUG, logger="fal_realtime")
    with client.realtime("owner/echo"):
        pass
    assert [r for r in caplog.records if r.name.startswith("fal_realtime") and r.levelno == logging.DEBUG]


def test_client_repr_never_shows_the_key() -> None:
    c = Client(key="very-secret-key")
    assert "very-secret-key" not in repr(c)
