"""Redis restart in the middle of a run (AOF, ``appendfsync everysec``, SIGKILL, same port and dir).

Workers and the dev loop must ride out 3 s of downtime: reconnect with backoff, no crash, no worker
exit. An acknowledged enqueue older than the fsync window (1 s; 1.5 s counted) must survive and run; jobs
enqueued in the last moments before the kill may be lost, and are counted, not asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.e2e import conftest
from tests.e2e.conftest import FAST_LEASES, StartLoop, jobqueue_manifest, receipts, record
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue, connect
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.embedded_redis import RedisServer

AOF = conftest.aof("everysec")
FSYNC_WINDOW_S = 1.5


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = conftest.aof_server(tmp_path, "everysec")
    yield server
    server.stop()


async def _produce(queue: Queue, acked: list[tuple[str, float]], stop: asyncio.Event) -> int:
    """Enqueue 10 jobs every 0.1 s until stopped; returns the enqueues refused while Redis was down."""
    refused = 0
    n = 0
    while not stop.is_set():
        specs = [JobSpec("process_order", {"order_id": n + i}) for i in range(10)]
        try:
            jobs = await queue.enqueue_many(specs)
        except TRANSIENT_ERRORS:
            refused += 1
        else:
            now = time.monotonic()
            acked.extend((job.id, now) for job in jobs)
            n += 10
        await asyncio.sleep(0.1)
    return refused


async def test_workers_and_loop_survive_a_redis_restart(
    start_loop: StartLoop, aof_server: RedisServer, queue_name: str
) -> None:
    manifest = jobqueue_manifest(
        queue_name,
        env={"DEMO_JOB_MS": "20-50", **FAST_LEASES},
        scaling={
            "minReplicas": 1,
            "maxReplicas": 4,
            "targets": {"backlogPerReplica": 100, "maxOldestAge": 10},
        },
        jobs={"attempts": 25, "backoff": {"baseSeconds": 0.2, "capSeconds": 1}},
    )
    dev = start_loop(manifest, aof_server.url)
    run = dev.run
    client = connect(aof_server.url)
    queue = Queue(queue_name, client)
    acked: list[tuple[str, float]] = []
    stop = asyncio.Event()
    producer = asyncio.create_task(_produce(queue, acked, stop))
    try:
        await wait_for(lambda: len(acked) >= 400, timeout=20, message="load running before the kill")
        await wait_for(lambda: run.actuator.running, timeout=10, message="workers up")
        pids_before = dict(run.actuator.pids)
        killed_at = time.monotonic()
        aof_server.stop(sig=9)  # SIGKILL: whatever was not fsynced is gone
        down_until = killed_at + 3.0
        await asyncio.sleep(max(0.0, down_until - time.monotonic()))  # Redis stays down for 3 s
        restarted = RedisServer(port=aof_server.port, extra_args=AOF, workdir=aof_server.workdir).start()
        restart_s = time.monotonic() - killed_at
        try:
            await wait_for(lambda: len(acked) >= 800, timeout=30, message="producing again after the restart")
        finally:
            stop.set()
            refused = await producer
        old = [job_id for job_id, at in acked if at < killed_at - FSYNC_WINDOW_S]
        recent = [job_id for job_id, at in acked if killed_at - FSYNC_WINDOW_S <= at < killed_at]
        redis: aioredis.Redis = client

        async def old_ones_ran() -> bool:
            done = await receipts(redis, queue_name)
            return all(job_id in done for job_id in old)

        await wait_for(old_ones_ran, timeout=60, interval=0.25, message="every job older than the window ran")
        done = await receipts(client, queue_name)
        after = [job_id for job_id, at in acked if at > killed_at]
        figures = {
            "jobs_acked": len(acked),
            "older_than_window": len(old),
            "lost_older_than_window": sum(1 for j in old if j not in done),
            "in_window": len(recent),
            "lost_in_window": sum(1 for j in recent if j not in done),
            "enqueued_after_restart": len(after),
            "refused_while_down": refused,
            "restart_s": round(restart_s, 2),
            "probe_failures": run.probe_failures,
            "worker_exits": len(run.actuator.stats.exits),
        }
        record("redis-restart", figures)
        assert figures["lost_older_than_window"] == 0
        assert not run.actuator.stats.exits, "a worker crashed on the restart"
        assert set(pids_before) <= set(run.actuator.pids), "the workers from before the restart still serve"
        assert not dev.task.done(), "the dev loop died"
        assert after, "nothing was enqueued after the restart"

        async def new_ones_ran() -> bool:
            done = await receipts(redis, queue_name)
            return all(job_id in done for job_id in after)

        await wait_for(new_ones_ran, timeout=30, interval=0.25, message="jobs enqueued after the restart ran")
    finally:
        stop.set()
        await asyncio.gather(producer, return_exceptions=True)
        dev.stop.set()
        await dev.task
        await dev.loop.aclose(within=30)
        await client.aclose()
        if "restarted" in locals():
            restarted.stop()
