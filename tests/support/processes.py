"""Stopping a child process the suite started (a worker, a redis-server, Prometheus)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL if it is still there after ``timeout``; returns the exit code."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
