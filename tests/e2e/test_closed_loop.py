"""Closed loop, burst: 0 workers -> one within a poll -> enough for the age target -> back to 0.

Real worker processes started by dev mode's local actuator, the operator's own control pass, a real
redis-server. Every job must run exactly once in effect (receipts by job id) and be acknowledged once.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from tests.e2e.conftest import StartLoop, jobqueue_manifest, receipts, record
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue

BURST = 3_000
AGE_TARGET_S = 15
SCALING = {
    "minReplicas": 0,
    "maxReplicas": 6,
    "targets": {"backlogPerReplica": 500, "maxOldestAge": AGE_TARGET_S},
    "scaleUp": {"maxStepPerPeriod": 4, "periodSeconds": 2},
    "scaleDown": {"stabilizationWindowSeconds": 4, "periodSeconds": 1},
    "cooldownSeconds": 3,
}


async def test_burst_scales_up_drains_within_age_target_and_back_to_zero(
    start_loop: StartLoop, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    manifest = jobqueue_manifest(queue_name, env={"DEMO_JOB_MS": "20-50"}, scaling=SCALING)
    dev = start_loop(manifest, redis_url)
    run = dev.run
    await wait_for(lambda: run.passes >= 1, message="first control pass")
    assert run.actuator.stats.started == 0, "an idle queue starts no worker"

    queue = Queue(queue_name, redis)
    ids: list[str] = []
    started = time.monotonic()
    for offset in range(0, BURST, 1000):
        specs = [JobSpec("process_order", {"order_id": offset + i}) for i in range(1000)]
        ids.extend(job.id for job in await queue.enqueue_many(specs))
    enqueued_at = time.monotonic()

    await wait_for(lambda: run.actuator.stats.started >= 1, timeout=2.5, message="a worker within one poll")
    first_worker_s = time.monotonic() - enqueued_at

    async def all_done() -> bool:
        return len(await receipts(redis, queue_name)) >= BURST

    await wait_for(all_done, timeout=90, interval=0.25, message="every job ran")
    drained_s = time.monotonic() - started
    await wait_for(
        lambda: not run.actuator.running and not run.actuator.terminating and run.desired == 0,
        timeout=30,
        interval=0.1,
        message="back to zero workers after the window and cooldown",
    )
    back_to_zero_s = time.monotonic() - started

    done = await receipts(redis, queue_name)
    obs = await queue.observe()
    executions = sum(done.values())
    lost = [job_id for job_id in ids if job_id not in done]
    figures = {
        "jobs": BURST,
        "first_worker_s": round(first_worker_s, 2),
        "peak_workers": run.actuator.stats.peak,
        "worst_age_s": round(run.worst_age_s, 2),
        "age_target_s": AGE_TARGET_S,
        "drained_s": round(drained_s, 1),
        "back_to_zero_s": round(back_to_zero_s, 1),
        "executions": executions,
        "duplicates": executions - len(done),
        "lost": len(lost),
        "completed_total": obs.completed_total,
        "workers_started": run.actuator.stats.started,
    }
    record("closed-loop", figures)
    assert not lost
    assert executions == BURST, "no kills, so no job may run twice"
    assert obs.completed_total == BURST and obs.dead == 0
    assert run.actuator.stats.peak >= 3, "a burst this size needs more than a couple of workers"
    assert run.worst_age_s <= AGE_TARGET_S
    assert not run.actuator.stats.unexpected_exits
    assert all(e.returncode == 0 and not e.killed_after_grace for e in run.actuator.stats.exits)
