"""Scale-down never interrupts a job: idle workers go first, and a stopped worker drains.

Six single-slot workers take three long jobs and three short ones. Once the short ones are done the
policy wants three workers: the actuator must pick the three idle ones (heartbeats), and when the
long jobs finish the fleet goes to zero through SIGTERM and a graceful drain. Every job runs once,
with one attempt: nothing was handed back, recovered or retried.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from tests.e2e.conftest import FAST_LEASES, StartLoop, jobqueue_manifest, receipts, record
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue

LONG_MS = 6_000
SHORT_MS = 200


async def test_scale_down_takes_idle_workers_and_interrupts_nothing(
    start_loop: StartLoop, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    manifest = jobqueue_manifest(
        queue_name,
        env=FAST_LEASES,
        scaling={
            "minReplicas": 0,
            "maxReplicas": 6,
            "targets": {"backlogPerReplica": 1},
            "scaleUp": {"maxStepPerPeriod": 6, "periodSeconds": 1},
            "scaleDown": {"stabilizationWindowSeconds": 1, "tolerance": 0, "periodSeconds": 1},
            "cooldownSeconds": 2,
        },
        jobs={"attempts": 3, "timeoutSeconds": 30},
    )
    manifest["spec"]["workers"]["concurrency"] = 1
    dev = start_loop(manifest, redis_url)
    run = dev.run
    queue = Queue(queue_name, redis)
    specs = [JobSpec("process_order", {"order_id": i, "work_ms": LONG_MS}) for i in range(3)]
    specs += [JobSpec("process_order", {"order_id": 3 + i, "work_ms": SHORT_MS}) for i in range(3)]
    started = time.monotonic()
    ids = [job.id for job in await queue.enqueue_many(specs)]
    long_ids = set(ids[:3])

    await wait_for(lambda: run.actuator.stats.peak >= 6, timeout=5, message="six workers for six jobs")
    await wait_for(
        lambda: len(run.actuator.stats.removals) >= 3, timeout=LONG_MS / 1000, message="a scale-down to 3"
    )
    early = list(run.actuator.stats.removals)
    long_running = {j.id for j in [await queue.get_job(i) for i in long_ids] if j.state == "active"}
    await wait_for(
        lambda: run.desired == 0 and not run.actuator.running and not run.actuator.terminating,
        timeout=30,
        interval=0.1,
        message="back to zero once the long jobs finished",
    )
    jobs = [await queue.get_job(job_id) for job_id in ids]
    done = await receipts(redis, queue_name)
    interrupted = [j.id for j in jobs if j.attempts_made != 1 or done.get(j.id) != 1]
    exits = run.actuator.stats.exits
    figures = {
        "jobs": len(ids),
        "peak_workers": run.actuator.stats.peak,
        "removed_while_long_jobs_ran": [(r.pod, r.inflight) for r in early],
        "busy_workers_removed_early": sum(1 for r in early if r.inflight > 0),
        "interrupted": len(interrupted),
        "killed_after_grace": sum(1 for e in exits if e.killed_after_grace),
        "nonzero_exits": sum(1 for e in exits if e.returncode != 0),
        "seconds": round(time.monotonic() - started, 1),
    }
    record("scale-down-drain", figures)
    assert long_running == long_ids, "the scale-down happened while the long jobs ran"
    assert figures["busy_workers_removed_early"] == 0, "a busy worker was picked while idle ones existed"
    assert not interrupted
    assert all(j.state == "completed" for j in jobs)
    assert figures["killed_after_grace"] == 0 and figures["nonzero_exits"] == 0
    assert not run.actuator.stats.unexpected_exits
