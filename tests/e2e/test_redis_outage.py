"""A Redis outage longer than the lease, with jobs in flight: nothing runs twice, nothing is lost.

Three worker processes under dev mode's loop, the default heartbeat, a 10 s lease and a stalled-job
check every half second, run jobs of 3-9 s; Redis stops for 30 s (SIGTERM: with ``appendfsync always``
every acknowledged write is on disk, so what is tested is the runtime, not the server's durability)
and starts again on the same port. The workers' leases expired long before Redis came back; each
live worker re-extends its own before it claims, and no worker recovers leases until the others had
a heartbeat window to do the same. So every job runs exactly once, no lease is recovered, no worker
exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import conftest
from tests.e2e.conftest import StartLoop, jobqueue_manifest, receipts, record
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue, connect
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.embedded_redis import RedisServer

AOF = conftest.aof("always")
JOBS = 60
OUTAGE_S = 30.0


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = conftest.aof_server(tmp_path, "always")
    yield server
    server.stop()


@pytest.mark.timeout(180)
async def test_an_outage_longer_than_the_lease_runs_nothing_twice(
    start_loop: StartLoop, aof_server: RedisServer, queue_name: str
) -> None:
    manifest = jobqueue_manifest(
        queue_name,
        # A stalled-job check every half second: recovery is tried far more often than leases are
        # extended, so a worker that recovered leases before the others re-extended would show.
        env={"JOBQUEUE_LEASE_SECONDS": "10", "JOBQUEUE_STALLED_INTERVAL_SECONDS": "0.5"},
        scaling={"minReplicas": 3, "maxReplicas": 3, "targets": {"backlogPerReplica": 100}},
    )
    dev = start_loop(manifest, aof_server.url)
    client = connect(aof_server.url)
    queue = Queue(queue_name, client)
    workdir, port = aof_server.workdir, aof_server.port
    restarted: RedisServer | None = None
    try:
        specs = [JobSpec("process_order", {"order_id": i, "work_ms": 3000 + 100 * i}) for i in range(JOBS)]
        ids = [job.id for job in await queue.enqueue_many(specs)]

        async def in_flight() -> bool:
            return (await queue.observe()).active >= 12  # 3 workers x concurrency 4

        await wait_for(in_flight, timeout=30, message="every worker busy")
        stopped_at = time.monotonic()
        aof_server.stop()
        await asyncio.sleep(OUTAGE_S)  # the outage itself: nothing to wait for but time
        restarted = RedisServer(port=port, extra_args=AOF, workdir=workdir).start()
        outage_s = time.monotonic() - stopped_at

        async def all_done() -> bool:
            return len(await receipts(client, queue_name)) >= JOBS

        await wait_for(all_done, timeout=90, interval=0.5, ignore=TRANSIENT_ERRORS, message="every job ran")

        async def settled() -> bool:
            obs = await queue.observe()
            return obs.completed_total >= JOBS and obs.active == 0 and obs.waiting == 0

        await wait_for(settled, timeout=30, interval=0.25, message="every job acknowledged")
        done = await receipts(client, queue_name)
        obs = await queue.observe()
        counters = await client.hgetall(queue.commands.keys.counters)
        figures = {
            "jobs": JOBS,
            "lease_s": 10,
            "outage_s": round(outage_s, 1),
            "run_twice": sum(1 for n in done.values() if n > 1),
            "lost": sum(1 for job_id in ids if job_id not in done),
            "completed_total": obs.completed_total,
            "stalled_recovered": int(counters.get(b"stalled", 0)),
            "worker_exits": len(dev.run.actuator.stats.exits),
        }
        record("redis-outage", figures)
        assert figures["run_twice"] == 0 and figures["lost"] == 0
        assert obs.completed_total == JOBS and obs.dead == 0
        assert figures["stalled_recovered"] == 0, "a live worker's lease was recovered"
        assert not dev.run.actuator.stats.exits, "a worker exited over the outage"
    finally:
        dev.stop.set()
        await dev.task
        await dev.loop.aclose(within=30)
        await queue.aclose()
        await client.aclose()
        if restarted is not None:
            restarted.stop()
