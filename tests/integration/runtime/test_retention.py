"""Retention of finished jobs: completed and dead jobs are kept up to a count AND an age.

| case                                          | expectation                                            |
| --------------------------------------------- | ------------------------------------------------------ |
| a worker with ``keep_dead=2``, 5 poison jobs  | the 2 newest dead jobs kept, the others deleted        |
| a worker with ``keep_completed_seconds``      | a completed job older than that is deleted             |
| dead by age, through fail and recover_stalled | a dead job older than ``keep_dead_seconds`` deleted    |
| a limit far below what a set holds            | each transition deletes <= RETAIN_BUDGET; it converges |
"""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import App, JobContext, JobState, Permanent, Queue, scripts
from worker_runtime.commands import NewJob, QueueCommands
from worker_runtime.options import JobOptions
from worker_runtime.retention import RETAIN_BUDGET, Keep, Retention

WORKER = "worker-retention-test"


async def _server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _after(redis: aioredis.Redis, ms: int) -> None:
    async def past() -> bool:
        return await _server_ms(redis) > ms

    await wait_for(past, timeout=5, message=f"server clock past {ms}")


async def test_a_worker_keeps_the_newest_dead_jobs(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job(attempts=1)
    async def poison(ctx: JobContext, payload: int) -> None:
        raise Permanent(f"bad {payload}")

    start_worker(app, keep_dead=2, concurrency=1)
    for i in range(5):
        job = await queue.enqueue("poison", i)
        await finished(queue, job.id, JobState.DEAD)
    dead = await queue.dead_jobs()
    assert sorted(j.payload for j in dead) == [3, 4]
    keys = queue.commands.keys
    assert await queue.redis.zcard(keys.dead) == 2
    assert (await queue.stats()).dead_total == 5  # counted, then deleted by retention


async def test_a_worker_deletes_completed_jobs_past_their_age(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job()
    async def work(ctx: JobContext, payload: int) -> int:
        return payload

    start_worker(app, keep_completed_seconds=0.3, concurrency=1)
    old = await queue.enqueue("work", 1)
    done = await finished(queue, old.id)
    assert done.finished_at is not None
    await _after(queue.redis, round(done.finished_at * 1000) + 300)
    new = await queue.enqueue("work", 2)
    await finished(queue, new.id)
    with pytest.raises(KeyError):
        await queue.get_job(old.id)
    assert (await queue.stats()).completed == 1


class Lab:
    """A queue driven through the scripts' twins, with a given retention."""

    def __init__(self, redis: aioredis.Redis, queue: str, retention: Retention) -> None:
        self.redis = redis
        self.commands = QueueCommands(queue, retention=retention)
        self.keys = self.commands.keys

    async def claimed(self, lease_ms: int = 60_000, attempts: int = 1) -> tuple[str, str]:
        options = JobOptions(attempts=attempts, timeout=60, backoff=(0.001, 0.001))
        job = NewJob(uuid.uuid4().hex, "job", '{"typical": "payload"}', options)
        await scripts.run(self.redis, self.commands.enqueue(job))
        claimed = await scripts.run(self.redis, self.commands.claim(WORKER, 1, lease_ms, -1))
        return job.id, claimed.jobs[0].token

    async def complete(self) -> str:
        job_id, token = await self.claimed()
        await scripts.run(self.redis, self.commands.complete(job_id, token, "null"))
        return job_id

    async def fail(self) -> str:
        job_id, token = await self.claimed()
        await scripts.run(
            self.redis, self.commands.fail(job_id, token, "Permanent: no", "", 0, True, attempts=1)
        )
        return job_id

    async def stall(self) -> str:
        """A job whose worker is lost, then lost again while it runs alone: dead (limit 1)."""
        job_id, _ = await self.claimed(lease_ms=1)
        for dead in (0, 1):
            await _after(self.redis, int(await self.redis.zscore(self.keys.active, job_id)))  # type: ignore[arg-type]
            call = self.commands.recover_stalled("worker-b", 1, 60_000, stalls_alone_limit=1)
            assert (await scripts.run(self.redis, call)).dead_lettered == dead
            if not dead:
                await _after(self.redis, await _server_ms(self.redis))  # the next check is elected
                await scripts.run(self.redis, self.commands.claim(WORKER, 1, 1, -1, running=0))
        return job_id

    async def exists(self, job_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.job(job_id)))


@pytest.mark.parametrize("how", ["fail", "stall"])
async def test_dead_jobs_past_their_age_are_deleted(redis: aioredis.Redis, queue_name: str, how: str) -> None:
    lab = Lab(redis, queue_name, Retention(dead=Keep(count=100, seconds=0.2)))
    kill = lab.fail if how == "fail" else lab.stall
    old = await kill()
    died = int(await redis.zscore(lab.keys.dead, old))  # type: ignore[arg-type]
    await _after(redis, died + 200)
    new = await kill()
    assert not await lab.exists(old) and await lab.exists(new)
    assert await redis.zrange(lab.keys.dead, 0, -1) == [new.encode()]


@pytest.mark.parametrize("state", ["completed", "dead"])
async def test_trimming_is_bounded_per_transition(redis: aioredis.Redis, queue_name: str, state: str) -> None:
    """A limit lowered far below what the set holds is reached over several transitions, each
    deleting at most RETAIN_BUDGET jobs: no transition scans or deletes the whole set."""
    keep_all = Lab(redis, queue_name, Retention(completed=Keep(10**6, 10**6), dead=Keep(10**6, 10**6)))
    finish = keep_all.complete if state == "completed" else keep_all.fail
    held = 3 * RETAIN_BUDGET
    for _ in range(held):
        await finish()
    key = keep_all.keys.of_state(state)
    strict = Lab(redis, queue_name, Retention(completed=Keep(1, 10**6), dead=Keep(1, 10**6)))
    strict_finish = strict.complete if state == "completed" else strict.fail
    sizes = []
    for _ in range(4):
        await strict_finish()
        sizes.append(await redis.zcard(key))
    assert sizes == [held + 1 - RETAIN_BUDGET, held + 2 - 2 * RETAIN_BUDGET, held + 3 - 3 * RETAIN_BUDGET, 1]
    assert len(await redis.keys(f"{strict.keys.job_prefix}*")) == 1
