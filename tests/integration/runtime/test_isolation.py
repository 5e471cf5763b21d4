"""A job that kills its worker: isolated and convicted, its neighbours unharmed (real processes).

| case                                                 | expectation                                        |
| ---------------------------------------------------- | -------------------------------------------------- |
| a job that kills its worker, claimed with 7 others   | the 7 complete once; only it is dead, its error    |
|                                                      | says the worker died while running it, how often   |
| a job recovered from a dead worker                   | claimed alone, the worker claims nothing beside it |
| a lost lease                                         | not charged as an attempt                          |
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.processes import Fleet
from tests.integration.runtime.test_worker import finished
from worker_runtime import JobSpec, JobState, Queue, scripts
from worker_runtime.commands import QueueCommands


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis)  # no app: the worker processes have it
    yield q
    await q.aclose()


@pytest.mark.timeout(120)
async def test_a_job_that_kills_its_worker_dies_alone(
    redis_url: str, redis: aioredis.Redis, queue: Queue, queue_name: str
) -> None:
    poison = (await queue.enqueue("kill_worker")).id
    normal = [j.id for j in await queue.enqueue_many([JobSpec("work", 0.3) for _ in range(7)])]
    # One process takes all eight in its first claim; a restarted one replaces it when it dies.
    fleet = Fleet(redis_url, queue_name, size=1, env={"JOBQUEUE_CONCURRENCY": "8"}).start()
    try:
        for job_id in normal:
            await finished(queue, job_id, within=60)
        dead = await finished(queue, poison, JobState.DEAD, within=60)
    finally:
        await fleet.aclose()
    runs = await redis.hgetall(worker_apps.runs_key(queue_name))
    assert {k.decode(): int(v) for k, v in runs.items()} == dict.fromkeys(normal, 1)
    assert [(await queue.get_job(j)).attempts_made for j in normal] == [1] * 7
    print(f"worker exits: {fleet.exits}; poison job's error: {dead.error}")
    assert dead.error is not None and "worker" in dead.error and "3 times" in dead.error
    assert len(fleet.exits) == 3  # once among its neighbours, then twice alone
    stats = await queue.stats()
    assert (stats.dead, stats.completed_total) == (1, 7)


async def test_a_recovered_job_is_claimed_alone(redis: aioredis.Redis, queue: Queue) -> None:
    """After a worker died with it, a job is handed out on its own, to a worker running nothing.
    A busy worker meeting it claims nothing more until it is idle (so the job cannot starve behind
    a fleet that is never idle); while one worker drains for it, the others claim around it."""
    c = QueueCommands(queue.name)
    suspect = (await queue.enqueue("work", 0)).id
    first = await scripts.run(redis, c.claim("dead-worker", 1, 60_000, -1))
    assert [j.id for j in first.jobs] == [suspect] and not first.jobs[0].alone
    await redis.zadd(c.keys.active, {suspect: 0})  # its worker died: the lease ran out
    recovery = await scripts.run(redis, c.recover_stalled("w2", 1000, 60_000))
    assert recovery.recovered == 1
    back = await queue.get_job(suspect)
    assert back.state is JobState.WAITING and back.attempts_made == 0  # a lost lease is no attempt
    others = [j.id for j in await queue.enqueue_many([JobSpec("work", 0) for _ in range(5)])]

    draining = await scripts.run(redis, c.claim("busy", 10, 60_000, -1, running=3))
    assert draining.jobs == [] and draining.isolate  # claims nothing more until it is idle
    around = await scripts.run(redis, c.claim("other", 10, 60_000, -1, running=3))
    assert sorted(j.id for j in around.jobs) == sorted(others) and not around.isolate
    alone = await scripts.run(redis, c.claim("busy", 10, 60_000, -1, running=0))
    assert [j.id for j in alone.jobs] == [suspect] and alone.jobs[0].alone
    assert (await queue.get_job(suspect)).attempts_made == 1
