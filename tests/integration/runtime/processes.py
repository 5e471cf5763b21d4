"""Real ``jobqueue worker`` processes for runtime tests, and a supervisor that restarts them.

The processes run ``tests.integration.runtime.worker_apps:app`` on the test's queue, with short
leases, so a killed worker's jobs come back within a few seconds. ``Fleet`` plays the part of
Kubernetes restarting a crashed container: it replaces every worker process that exits, and
counts the exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import processes

ROOT = Path(__file__).resolve().parents[3]
APP = "tests.integration.runtime.worker_apps:app"


def worker_env(redis_url: str, queue: str, **env: str) -> dict[str, str]:
    return os.environ | {
        "TEST_QUEUE": queue,
        "JOBQUEUE_REDIS_URL": redis_url,
        "JOBQUEUE_METRICS_PORT": "0",
        "JOBQUEUE_LEASE_SECONDS": "1",
        "JOBQUEUE_HEARTBEAT_SECONDS": "0.2",
        "JOBQUEUE_STALLED_INTERVAL_SECONDS": "0.3",
        "PYTHONPATH": str(ROOT),
        **env,
    }


def spawn_worker(
    redis_url: str, queue: str, *, stderr: int | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """``python -m worker_runtime worker`` on ``queue``; keyword arguments are extra environment."""
    command = [sys.executable, "-m", "worker_runtime", "worker", APP]
    return subprocess.Popen(command, env=worker_env(redis_url, queue, **env), cwd=ROOT, stderr=stderr)


stop = processes.stop_process  # the runtime tests' name for it


@dataclass
class Fleet:
    """``size`` worker processes kept running: an exited one is replaced (and its exit counted)."""

    redis_url: str
    queue: str
    size: int
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Fleet:
        self.processes = [self._spawn() for _ in range(self.size)]
        self._task = asyncio.create_task(self._supervise())
        return self

    def _spawn(self) -> subprocess.Popen[bytes]:
        return spawn_worker(self.redis_url, self.queue, **self.env)

    async def _supervise(self) -> None:
        while True:
            for i, process in enumerate(self.processes):
                code = process.poll()
                if code is not None:
                    self.exits.append(code)
                    self.processes[i] = self._spawn()
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(asyncio.to_thread(stop, p) for p in self.processes))
