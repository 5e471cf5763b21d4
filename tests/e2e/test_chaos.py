"""Chaos: SIGKILL a random worker every 2 seconds during a 10,000-job run.

Leases are short (2 s, stalled check every 0.5 s), so a killed worker's jobs come back quickly.
At the end: no job lost, every job completed and acknowledged exactly once (the completed counter
equals the job count, since a stale lease token cannot acknowledge), and re-executions no more than
kills x concurrency (a killed worker's in-flight jobs may have run to their side effect).
``-m soak`` runs a longer variant.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import FAST_LEASES, Running, StartLoop, jobqueue_manifest, receipts, record
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue

CONCURRENCY = 4
KILL_EVERY_S = 2.0


def _manifest(queue: str) -> dict[str, object]:
    manifest = jobqueue_manifest(
        queue,
        env={"DEMO_JOB_MS": "20-50", **FAST_LEASES},
        scaling={
            "minReplicas": 1,
            "maxReplicas": 6,
            "targets": {"backlogPerReplica": 400, "maxOldestAge": 20},
            "scaleUp": {"maxStepPerPeriod": 4, "periodSeconds": 2},
            "scaleDown": {"stabilizationWindowSeconds": 10},
            "cooldownSeconds": 5,
        },
        jobs={"attempts": 25, "backoff": {"baseSeconds": 0.1, "capSeconds": 1}, "timeoutSeconds": 10},
    )
    manifest["spec"]["workers"]["concurrency"] = CONCURRENCY  # type: ignore[index]
    return manifest


async def _produce(queue: Queue, jobs: int, seconds: float, ids: list[str]) -> None:
    """Enqueue ``jobs`` at a steady pace over ``seconds``, in batches every 0.25 s."""
    ticks = round(seconds / 0.25)
    per_tick = -(-jobs // ticks)
    started = time.monotonic()
    for tick in range(ticks):
        await asyncio.sleep(max(0.0, started + tick * 0.25 - time.monotonic()))
        count = min(per_tick, jobs - len(ids))
        if count <= 0:
            break
        specs = [JobSpec("process_order", {"order_id": len(ids) + i}) for i in range(count)]
        ids.extend(job.id for job in await queue.enqueue_many(specs))


async def _kill_randomly(dev: Running, done: asyncio.Event, kills: list[str]) -> None:
    rng = random.Random(7)
    while not done.is_set():
        await asyncio.sleep(KILL_EVERY_S)
        pids = dev.run.actuator.pids
        if pids and not done.is_set():
            pod = rng.choice(sorted(pids))
            os.kill(pids[pod], signal.SIGKILL)
            kills.append(pod)


async def _chaos(
    name: str,
    start_loop: StartLoop,
    redis_url: str,
    redis: aioredis.Redis,
    queue_name: str,
    jobs: int,
    seconds: float,
) -> None:
    dev = start_loop(_manifest(queue_name), redis_url)
    queue = Queue(queue_name, redis)
    ids: list[str] = []
    kills: list[str] = []
    done = asyncio.Event()
    started = time.monotonic()
    killer = asyncio.create_task(_kill_randomly(dev, done, kills))
    await _produce(queue, jobs, seconds, ids)

    async def all_ran() -> bool:
        return len(await receipts(redis, queue_name)) >= jobs

    try:
        await wait_for(all_ran, timeout=90, interval=0.25, message="every job ran despite the kills")
    finally:
        done.set()
        await killer

    async def settled() -> bool:
        obs = await queue.observe()
        return obs.waiting == 0 and obs.active == 0 and obs.retry == 0 and obs.completed_total >= jobs

    await wait_for(settled, timeout=30, interval=0.25, message="queue empty, every job acknowledged")
    obs = await queue.observe()
    done_by_id = await receipts(redis, queue_name)
    executions = sum(done_by_id.values())
    lost = [job_id for job_id in ids if job_id not in done_by_id]
    figures = {
        "jobs": len(ids),
        "kills": len(kills),
        "concurrency": CONCURRENCY,
        "executions": executions,
        "duplicates": executions - len(done_by_id),
        "duplicate_bound": len(kills) * CONCURRENCY,
        "lost": len(lost),
        "completed_total": obs.completed_total,
        "dead": obs.dead,
        "peak_workers": dev.run.actuator.stats.peak,
        "workers_started": dev.run.actuator.stats.started,
        "worst_age_s": round(dev.run.worst_age_s, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    record(name, figures)
    assert len(ids) == jobs
    assert not lost
    assert obs.completed_total == jobs, "a job was acknowledged twice (or not at all)"
    assert obs.dead == 0
    assert executions - len(done_by_id) <= len(kills) * CONCURRENCY
    assert len(kills) >= seconds / KILL_EVERY_S / 2, "the chaos did not happen"


@pytest.mark.timeout(180)
async def test_sigkill_a_worker_every_2s_loses_nothing(
    start_loop: StartLoop, redis_url: str, redis: aioredis.Redis, queue_name: str
) -> None:
    await _chaos("chaos", start_loop, redis_url, redis, queue_name, jobs=10_000, seconds=50)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_sigkill_for_ten_minutes(
    request: pytest.FixtureRequest,
    start_loop: StartLoop,
    redis_url: str,
    redis: aioredis.Redis,
    queue_name: str,
) -> None:
    if "soak" not in (request.config.getoption("-m") or ""):
        pytest.skip("soak variant: run with -m soak")
    await _chaos("chaos-soak", start_loop, redis_url, redis, queue_name, jobs=100_000, seconds=600)
