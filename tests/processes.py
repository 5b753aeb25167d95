"""Helpers for tests that drive real `rexdrug` processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest


def wait_for_pause(proc: subprocess.Popen, marker: Path, timeout_s: float) -> None:
    """Wait until a sweep started with ``REXDRUG_PAUSE_AT_STAGE``/``REXDRUG_PAUSE_MARKER`` has reached
    its pause point (the marker exists); fail the test if the process ends or the time runs out first."""
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before the pause point: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("sweep did not reach the pause point in time")
        time.sleep(0.5)
