"""The README's examples run as they are (against the emulator)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "script, expect",
    [
        ("realtime_sync.py", "2 ['prompt', 'seed']"),
        ("realtime_async.py", "parallel: [0, 1, 2, 3]"),
        ("realtime_callbacks.py", "result: ['prompt', 'seed']"),
    ],
)
def test_example(emu: Any, script: str, expect: str) -> None:
    # How the examples' docstrings (and the README) point them at the emulator.
    env = dict(os.environ, FAL_RUN_HOST=f"ws://{emu.host}", FAL_REST_URL=f"http://{emu.host}", FAL_KEY="test-key")
    env.pop("FAL_KEY_ID", None)
    env.pop("FAL_KEY_SECRET", None)
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout, out.stdout
