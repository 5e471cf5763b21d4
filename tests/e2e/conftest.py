"""Closed-loop fixtures: dev mode's loop over real worker processes against a real redis-server.

The workers run ``examples.demo_app``, whose handler records a receipt per execution by job id
(``demo:{queue}:executions``), so a test counts lost jobs (enqueued ids without a receipt) and
re-executions (receipts above one) independently of the queue's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis
from jobqueue_operator import spec
from jobqueue_operator.dev import loop as devloop

from examples import demo_app
from worker_runtime.embedded_redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
# Fast failure detection, so a killed worker's jobs come back within a few seconds.
FAST_LEASES = {
    "JOBQUEUE_LEASE_SECONDS": "2",
    "JOBQUEUE_HEARTBEAT_SECONDS": "0.5",
    "JOBQUEUE_STALLED_INTERVAL_SECONDS": "0.5",
}


def jobqueue_manifest(
    queue: str,
    *,
    env: dict[str, str],
    scaling: dict[str, Any],
    app: str = "examples.demo_app:app",
    **spec_extra: Any,
) -> dict[str, Any]:
    """A JobQueue for ``app`` (the demo's by default) on ``queue``, with the container env and
    scaling given."""
    container = {
        "name": "worker",
        "image": "jobqueue/example-worker:test",
        "args": [app],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": queue},
        "spec": {
            "queue": {"name": queue, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"concurrency": 4, "template": {"spec": {"containers": [container]}}},
            "scaling": {"pollingInterval": 1, **scaling},
            **spec_extra,
        },
    }


@dataclass
class Running:
    """A dev loop running in the background of a test."""

    loop: devloop.DevLoop
    task: asyncio.Task[None]
    stop: asyncio.Event

    @property
    def run(self) -> devloop.QueueRun:
        return self.loop.runs[0]


StartLoop = Callable[[dict[str, Any], str], Running]


def _worker_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "worker_runtime" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers import ``examples.demo_app`` from the working directory."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
async def start_loop(in_repo_root: None, tmp_path: Path) -> AsyncIterator[StartLoop]:
    """Start ``DevLoop``s; each is stopped, its workers drained, and no worker process may remain."""
    started: list[Running] = []

    def start(manifest: dict[str, Any], redis_url: str) -> Running:
        targets = devloop.targets_from_documents([manifest])
        loop = devloop.DevLoop(targets, redis_url, log_dir=tmp_path / "workers")
        stop = asyncio.Event()
        running = Running(loop, asyncio.create_task(loop.run(stop)), stop)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        await running.task
        await running.loop.aclose(within=30)
    leftover = _worker_children()
    for process in leftover:
        process.kill()
    assert not leftover, f"worker processes left behind: {leftover}"


def aof(fsync: str) -> list[str]:
    """redis-server arguments for an append-only file synced ``always`` or ``everysec``."""
    return ["--appendonly", "yes", "--appendfsync", fsync]


def aof_server(tmp_path: Path, fsync: str) -> RedisServer:
    """A started redis-server with an AOF in ``tmp_path/redis``; restart it on the same port and
    directory (``RedisServer(port=..., workdir=..., extra_args=aof(fsync))``) to keep its data."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    return RedisServer(extra_args=aof(fsync), workdir=str(workdir)).start()


async def receipts(client: aioredis.Redis, queue: str) -> dict[str, int]:
    """Executions per job id, as recorded by the handler."""
    raw = await client.hgetall(demo_app.executions_key(queue))
    return {k.decode(): int(v) for k, v in raw.items()}


def record(name: str, figures: dict[str, Any]) -> None:
    """Print a test's figures and write them to bench/results/e2e-<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"e2e-{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\ne2e {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
