"""Redis unreachable: leases kept across an outage, /healthz, stop in every state (real processes).

Each test has a redis-server of its own (AOF with ``appendfsync always``, so a stop and restart
on the same port loses no write: what is tested is the runtime, not the server's durability).

| case                                                   | expectation                                     |
| ------------------------------------------------------ | ----------------------------------------------- |
| outage longer than the lease, jobs in flight           | 0 run twice, 0 lost: live workers keep their    |
|                                                        | jobs (leases re-extended before recovery runs)  |
| Redis down while every slot is busy                    | /healthz 503 within a heartbeat, 200 once back  |
| SIGTERM while Redis is down (idle, busy, at start-up)  | the process ends within its grace period        |
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.processes import Fleet, spawn_worker, stop
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue, connect
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.embedded_redis import RedisServer, free_port

AOF = ["--appendonly", "yes", "--appendfsync", "always"]


class Restartable:
    """A redis-server that a test stops (SIGTERM: every write is on disk) and starts again."""

    def __init__(self, workdir: Path) -> None:
        self.server = RedisServer(extra_args=AOF, workdir=str(workdir))
        self.port = self.server.port
        self.url = self.server.url

    def start(self) -> None:
        self.server = RedisServer(port=self.port, extra_args=AOF, workdir=self.server.workdir).start()

    def stop(self) -> None:
        workdir = self.server.workdir
        self.server.stop()
        self.server.workdir = workdir


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Restartable]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = Restartable(workdir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(own_redis: Restartable) -> AsyncIterator[aioredis.Redis]:
    c = connect(own_redis.url)
    yield c
    await c.aclose()


async def _runs(client: aioredis.Redis, queue: str) -> dict[str, int]:
    raw = await client.hgetall(worker_apps.runs_key(queue))
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.mark.timeout(120)
async def test_an_outage_longer_than_the_lease_runs_nothing_twice(
    own_redis: Restartable, client: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, client)
    lease = {"JOBQUEUE_LEASE_SECONDS": "2", "JOBQUEUE_HEARTBEAT_SECONDS": "0.2"}
    fleet = Fleet(own_redis.url, queue_name, size=2, env={"JOBQUEUE_CONCURRENCY": "10", **lease}).start()
    try:
        # 20 jobs in flight (2-6 s each) when Redis goes away for 6 s: longer than the lease, and
        # longer than the reconnect backoff's cap.
        ids = [j.id for j in await queue.enqueue_many([JobSpec("work", 2 + i / 5) for i in range(20)])]

        async def in_flight() -> bool:
            return (await queue.stats()).active == 20

        await wait_for(in_flight, timeout=20, message="every job claimed")
        own_redis.stop()
        await asyncio.sleep(6)  # the outage itself: nothing to wait for but time
        own_redis.start()

        async def all_done() -> bool:
            stats = await queue.stats()
            return stats.completed_total >= 20 and stats.active == 0 and stats.waiting == 0

        await wait_for(all_done, timeout=60, interval=0.2, ignore=TRANSIENT_ERRORS, message="every job done")
        runs = await _runs(client, queue_name)
    finally:
        await fleet.aclose()
        await queue.aclose()
    assert runs == dict.fromkeys(ids, 1), f"run twice: {[j for j, n in runs.items() if n > 1]}"
    assert fleet.exits == []
    stats = await queue.stats()
    assert (stats.completed_total, stats.dead) == (20, 0)
    assert int((await client.hgetall(queue.commands.keys.counters)).get(b"stalled", 0)) == 0


def _health(port: int) -> int:
    """``/healthz``'s status, 0 while nothing listens on ``port`` yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0


@pytest.mark.timeout(90)
async def test_healthz_says_503_while_redis_is_down_even_when_busy(
    own_redis: Restartable, client: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, client)
    port = free_port()
    worker = spawn_worker(
        own_redis.url, queue_name, JOBQUEUE_CONCURRENCY="2", JOBQUEUE_METRICS_PORT=str(port)
    )
    try:
        await queue.enqueue_many([JobSpec("work", 30), JobSpec("work", 30)])

        async def busy() -> bool:
            return (await queue.stats()).active == 2

        await wait_for(busy, timeout=20, message="every slot busy")
        assert await asyncio.to_thread(_health, port) == 200
        own_redis.stop()
        await wait_for(lambda: _health(port) == 503, timeout=10, message="503 while Redis is down")
        own_redis.start()
        await wait_for(lambda: _health(port) == 200, timeout=15, message="200 once Redis is back")
    finally:
        stop(worker, timeout=5)
        await queue.aclose()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("when", ["at start-up", "idle", "busy"])
async def test_sigterm_ends_a_worker_that_cannot_reach_redis(
    own_redis: Restartable, client: aioredis.Redis, queue_name: str, when: str
) -> None:
    queue = Queue(queue_name, client)
    job = await queue.enqueue("work", 5) if when == "busy" else None
    if when == "at start-up":
        own_redis.stop()
    port = free_port()
    worker = spawn_worker(
        own_redis.url, queue_name, JOBQUEUE_GRACE_PERIOD_SECONDS="2", JOBQUEUE_METRICS_PORT=str(port)
    )
    try:
        if when != "at start-up":

            async def serving() -> bool:
                stats = await queue.stats()
                return bool(stats.workers) and stats.active == (1 if job else 0)

            await wait_for(serving, timeout=20, message=f"worker serving ({when})")
            own_redis.stop()
        # 503 once the worker met the outage and retries it; at start-up, /healthz answers only
        # once the signal handlers are set (a SIGTERM before that stops a mere interpreter).
        await wait_for(
            lambda: _health(port) == 503, timeout=20, message=f"worker meeting the outage ({when})"
        )
        started = time.monotonic()
        worker.terminate()
        # Grace 2 s, plus the bounded hand-back and flush: well within Kubernetes' 30 s.
        code = await asyncio.to_thread(worker.wait, 15)
        print(f"{when}: exited with {code} after {time.monotonic() - started:.1f}s")
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker ignored SIGTERM while Redis was unreachable ({when})")
    finally:
        stop(worker, timeout=1)
    assert code == 0
    if job is not None:
        # Not lost: once Redis is back, its lease runs out and another worker runs it.
        own_redis.start()
        rescuer = spawn_worker(own_redis.url, queue_name)
        try:
            await finished(queue, job.id, within=30)
        finally:
            stop(rescuer)
    await queue.aclose()
