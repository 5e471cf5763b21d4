"""Plain ``def`` handlers under faults: hung for good, overrunning a graceful stop (real processes).

| case                                                    | expectation                                  |
| ------------------------------------------------------- | -------------------------------------------- |
| 50 ``def`` jobs hung for good (timeout 1 s) among 250   | every normal job completes; each hung one    |
| async and 250 ``def`` normal jobs                       | fails "timed out after 1s", never before it  |
|                                                         | started; SIGTERM ends the process in grace   |
| SIGTERM, grace shorter than a running ``def`` job       | the process ends within the grace period;    |
|                                                         | the job is handed back and no longer runs    |
|                                                         | in the old process (its process is gone)     |
| a ``def`` handler raises ``RateLimited(0.5, hold_queue)`` | the job waits without an attempt counted,  |
|                                                         | the queue's claims are held as long          |
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psutil
import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.processes import spawn_worker, stop
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import JobSpec, JobState, Queue
from worker_runtime.commands import QueueCommands

HUNG, NORMAL = 50, 250


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis)
    yield q
    await q.aclose()


async def _pids(redis: aioredis.Redis, queue: str) -> dict[str, int]:
    raw = await redis.hgetall(worker_apps.pids_key(queue))
    return {k.decode(): int(v) for k, v in raw.items()}


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(180)
async def test_hung_def_handlers_cost_their_own_jobs_only(
    redis_url: str, redis: aioredis.Redis, queue: Queue, queue_name: str
) -> None:
    specs: list[JobSpec] = []
    for i in range(NORMAL):  # the mix: one hung job in every eleven
        specs += [JobSpec("work", 0.01), JobSpec("work_sync", 0.01)]
        if i % (NORMAL // HUNG) == 0:
            specs.append(JobSpec("hang", timeout=1, attempts=1))
    jobs = await queue.enqueue_many(specs)
    hung_ids = [j.id for j, spec in zip(jobs, specs, strict=True) if spec.name == "hang"]
    normal_ids = [j.id for j, spec in zip(jobs, specs, strict=True) if spec.name != "hang"]
    assert len(hung_ids) == HUNG
    started = time.monotonic()
    worker = spawn_worker(redis_url, queue_name, JOBQUEUE_CONCURRENCY="10", JOBQUEUE_GRACE_PERIOD_SECONDS="2")
    try:

        async def normal_done() -> bool:
            runs = await redis.hgetall(worker_apps.runs_key(queue_name))
            return len(runs) >= len(normal_ids)

        await wait_for(normal_done, timeout=90, interval=0.25, message="every normal job ran")
        done_s = time.monotonic() - started
        for job_id in hung_ids:
            dead = await finished(queue, job_id, JobState.DEAD, within=30)
            assert dead.error == "TimeoutError: job timed out after 1s", dead.error
        all_s = time.monotonic() - started
        # Now hang every slot for good and stop: the process must still end within its grace.
        still = [j.id for j in await queue.enqueue_many([JobSpec("hang", timeout=3600)] * 10)]

        async def hung_now() -> bool:
            return len(set(still) & set(await _pids(redis, queue_name))) == 10

        await wait_for(hung_now, timeout=30, message="ten hung handlers running")
        stopped = time.monotonic()
        worker.terminate()
        code = await asyncio.to_thread(worker.wait, 10)  # grace 2 s, then the hung ones are killed
        exit_s = time.monotonic() - stopped
    finally:
        stop(worker, timeout=1)
    stats = await queue.stats()
    runs = await redis.hgetall(worker_apps.runs_key(queue_name))
    pids = await _pids(redis, queue_name)
    print(
        f"\nhung def handlers: {len(runs)}/{len(normal_ids)} normal jobs done in {done_s:.1f}s, "
        f"{stats.dead}/{HUNG} hung ones dead, all settled in {all_s:.1f}s; with 10 hung handlers "
        f"running, SIGTERM (grace 2 s) ended the process in {exit_s:.1f}s"
    )
    assert code == 0
    assert {k.decode(): int(v) for k, v in runs.items()} == dict.fromkeys(normal_ids, 1)
    assert (stats.completed_total, stats.dead) == (len(normal_ids), HUNG)
    assert all(_gone(pids[j]) for j in still), "a hung handler outlived its worker"
    for job_id in still:
        back = await queue.get_job(job_id)
        assert back.state is JobState.WAITING and back.attempts_made == 0


@pytest.mark.timeout(60)
async def test_a_handed_back_def_job_no_longer_runs_in_the_old_process(
    redis_url: str, redis: aioredis.Redis, queue: Queue, queue_name: str
) -> None:
    job = await queue.enqueue("work_sync", 20)
    worker = spawn_worker(redis_url, queue_name, JOBQUEUE_GRACE_PERIOD_SECONDS="1")
    try:
        await wait_for(lambda: _pids(redis, queue_name), timeout=20, message="the handler started")
        pid = (await _pids(redis, queue_name))[job.id]
        stopped = time.monotonic()
        worker.terminate()
        code = await asyncio.to_thread(worker.wait, 15)
        exit_s = time.monotonic() - stopped
    finally:
        stop(worker, timeout=1)
    print(f"exit {code} after {exit_s:.1f}s (grace 1 s)")
    assert code == 0
    back = await queue.get_job(job.id)
    assert back.state is JobState.WAITING and back.attempts_made == 0
    assert _gone(pid), "the handed-back job still runs in the old process"


@pytest.mark.timeout(60)
async def test_rate_limited_from_a_def_handler_postpones_without_counting_the_attempt(
    redis_url: str, redis: aioredis.Redis, queue: Queue, queue_name: str
) -> None:
    job = await queue.enqueue("limited_sync", 0.5, attempts=1)
    worker = spawn_worker(redis_url, queue_name)
    try:
        flow_key = QueueCommands(queue_name).keys.flow
        held = await wait_for(lambda: redis.hget(flow_key, "held_until"), timeout=20, message="held")
        done = await finished(queue, job.id, within=20)
    finally:
        stop(worker)
    assert done.result == 1  # ran again on attempt 1: the postponed one did not count (attempts=1)
    assert int(await redis.hget(worker_apps.runs_key(queue_name), job.id)) == 2  # type: ignore[arg-type]
    assert done.started_at is not None and done.started_at * 1000 >= int(held) - 1
    stats = await queue.stats()
    assert (stats.failed_total, stats.dead_total, stats.completed_total) == (0, 0, 1)
