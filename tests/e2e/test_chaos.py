"""Chaos: SIGKILL a random worker about every 2 seconds during a 10,000-job run, among which one
job kills its worker every time it runs (a segfault, an OOM kill).

Leases are short (2 s, stalled check every 0.5 s), so a killed worker's jobs come back quickly.
Each job has a single attempt: a lost worker must cost its jobs no attempt. At the end: no job
lost, every normal job completed and acknowledged exactly once (the completed counter equals their
count, since a stale lease token cannot acknowledge), the job that kills its worker alone in the
dead-letter set, its error saying how often it killed its worker (its neighbours were never charged
for its crashes, nor any job for the random kills), and
re-executions no more than worker deaths x concurrency (a dead worker's in-flight jobs may have run
to their side effect). ``-m soak`` runs a longer variant.
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
        app="tests.e2e.chaos_app:app",
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
        # One attempt each: a job whose worker is killed must not be charged an attempt for it.
        specs = [JobSpec("process_order", {"order_id": len(ids) + i}, attempts=1) for i in range(count)]
        ids.extend(job.id for job in await queue.enqueue_many(specs))


async def _kill_randomly(dev: Running, done: asyncio.Event, kills: list[str]) -> None:
    rng = random.Random(7)
    while not done.is_set():
        await asyncio.sleep(KILL_EVERY_S * rng.uniform(0.5, 1.5))
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
    producer = asyncio.create_task(_produce(queue, jobs, seconds, ids))
    await wait_for(lambda: len(ids) >= jobs // 5, timeout=seconds, message="load running")
    poison = (await queue.enqueue("kill_worker")).id
    await producer

    async def all_ran() -> bool:
        return len(await receipts(redis, queue_name)) >= jobs

    try:
        await wait_for(all_ran, timeout=90, interval=0.25, message="every job ran despite the kills")
    finally:
        done.set()
        await killer

    async def settled() -> bool:
        obs = await queue.observe()
        idle = obs.waiting == 0 and obs.active == 0 and obs.retrying == 0
        return idle and obs.completed_total >= jobs and obs.dead >= 1

    await wait_for(settled, timeout=30, interval=0.25, message="queue empty, every job acknowledged")
    obs = await queue.observe()
    done_by_id = await receipts(redis, queue_name)
    executions = sum(done_by_id.values())
    lost = [job_id for job_id in ids if job_id not in done_by_id]
    deaths = len(dev.run.actuator.stats.unexpected_exits)  # our kills and the poison job's
    dead = await queue.dead_jobs()
    figures = {
        "jobs": len(ids),
        "kills": len(kills),
        "concurrency": CONCURRENCY,
        "executions": executions,
        "duplicates": executions - len(done_by_id),
        "worker_deaths": deaths,
        "duplicate_bound": deaths * CONCURRENCY,
        "lost": len(lost),
        "completed_total": obs.completed_total,
        "dead": obs.dead,
        "poison_error": dead[0].error if dead else None,
        "peak_workers": dev.run.actuator.stats.peak,
        "workers_started": dev.run.actuator.stats.started,
        "worst_age_s": round(dev.run.worst_age_s, 2),
        "seconds": round(time.monotonic() - started, 1),
    }
    record(name, figures)
    assert len(ids) == jobs
    assert not lost
    assert obs.completed_total == jobs, "a job was acknowledged twice (or not at all)"
    assert [job.id for job in dead] == [poison], "a job other than the poison one is dead"
    assert "worker" in (dead[0].error or "") and "3 times" in (dead[0].error or ""), dead[0].error
    assert executions - len(done_by_id) <= deaths * CONCURRENCY
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
