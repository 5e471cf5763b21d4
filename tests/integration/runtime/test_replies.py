"""Typed replies: each script's twin turns every reply, refusals included, into a typed result.

| call                                 | situation                          | result                      |
| ------------------------------------ | ---------------------------------- | --------------------------- |
| complete / release / progress        | the lease holder                   | ``Ack.DONE``                |
| complete / fail / release / progress | a stale token (lease recovered)    | ``Ack.STALE``               |
| complete / fail / release / progress | no such job                        | ``Ack.MISSING``, no write   |
| fail                                 | attempts left / last / permanent   | ``FailOutcome.*``           |
| recover_stalled                      | elected / another's interval       | ``Recovery(elected=...)``   |
| replay                               | dead / not dead / no such job      | ``ReplayOutcome.*``         |
| extend_leases                        | held and lost leases               | one bool per job            |
| a pipeline with a bad reply          | one call's parser fails            | only that call's error      |
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from worker_runtime import Ack, FailOutcome, Queue, Recovery, ReplayOutcome, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.scripts import ScriptCall


async def _claimed(
    redis: aioredis.Redis, queue: Queue, worker: str = "w1", **options: object
) -> tuple[str, str]:
    job = await queue.enqueue("job", **options)  # type: ignore[arg-type]
    claimed = await scripts.run(redis, queue.commands.claim(worker, 1, 60_000, -1))
    assert [j.id for j in claimed.jobs] == [job.id]
    return job.id, claimed.jobs[0].token


async def _stolen(redis: aioredis.Redis, queue: Queue) -> tuple[str, str]:
    """A job whose first lease was recovered and claimed again: (id, the first, stale token)."""
    job_id, stale = await _claimed(redis, queue)
    await redis.zadd(queue.commands.keys.active, {job_id: 0})  # the lease ran out
    assert (await scripts.run(redis, queue.commands.recover_stalled("w2", 1000, 60_000))).recovered == 1
    again = await scripts.run(redis, queue.commands.claim("w2", 1, 60_000, -1))
    assert again.jobs[0].token != stale
    return job_id, stale


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> Queue:
    return Queue(queue_name, redis)


async def test_lease_holder_acks_are_done(redis: aioredis.Redis, queue: Queue) -> None:
    c = queue.commands
    job_id, token = await _claimed(redis, queue)
    assert await scripts.run(redis, c.progress(job_id, token, "50")) is Ack.DONE
    assert await scripts.run(redis, c.release(job_id, token)) is Ack.DONE
    again = (await scripts.run(redis, c.claim("w1", 1, 60_000, -1))).jobs[0]
    assert again.id == job_id
    assert await scripts.run(redis, c.complete(job_id, again.token, "1")) is Ack.DONE


async def test_stale_token_is_refused_by_every_lease_script(redis: aioredis.Redis, queue: Queue) -> None:
    c = queue.commands
    job_id, stale = await _stolen(redis, queue)
    calls: list[ScriptCall[Ack] | ScriptCall[FailOutcome | Ack]] = [
        c.complete(job_id, stale, "1"),
        c.fail(job_id, stale, "E: x", "", 0, False, attempts=3),
        c.release(job_id, stale),
        c.progress(job_id, stale, "1"),
    ]
    assert await scripts.run_many(redis, calls) == [Ack.STALE] * 4
    assert await scripts.run(redis, c.extend_leases("w1", {}, [(job_id, stale)], 60_000)) == [False]
    assert (await queue.get_job(job_id)).progress is None


async def test_missing_job_is_refused_and_nothing_is_written(redis: aioredis.Redis, queue: Queue) -> None:
    c = queue.commands
    calls: list[ScriptCall[Ack] | ScriptCall[FailOutcome | Ack]] = [
        c.complete("nope", "w1:1", "1"),
        c.fail("nope", "w1:1", "E: x", "", 0, False, attempts=3),
        c.release("nope", "w1:1"),
        c.progress("nope", "w1:1", "1"),
    ]
    assert await scripts.run_many(redis, calls) == [Ack.MISSING] * 4
    assert await redis.exists(c.keys.job("nope")) == 0


async def test_fail_says_where_the_job_went(redis: aioredis.Redis, queue: Queue) -> None:
    c = queue.commands
    job_id, token = await _claimed(redis, queue, attempts=2)
    assert (
        await scripts.run(redis, c.fail(job_id, token, "E: 1", "", 0, False, attempts=2))
        is FailOutcome.RETRYING
    )
    claimed = await scripts.run(redis, c.claim("w1", 1, 60_000, -1))  # the retry is due at once
    assert await scripts.run(
        redis, c.fail(job_id, claimed.jobs[0].token, "E: 2", "", 0, False, attempts=2)
    ) is (FailOutcome.DEAD)
    job_id, token = await _claimed(redis, queue, attempts=5)
    assert (
        await scripts.run(redis, c.fail(job_id, token, "Permanent: x", "", 0, True, attempts=5))
        is FailOutcome.DEAD
    )


async def test_recovery_can_say_not_elected(redis: aioredis.Redis, queue: Queue) -> None:
    """-1 means a missing job everywhere else; "not elected" has a code and a result of its own."""
    c = queue.commands
    assert await scripts.run(redis, c.recover_stalled("w1", 60_000, 60_000)) == Recovery(elected=True)
    assert await scripts.run(redis, c.recover_stalled("w2", 60_000, 60_000)) == Recovery(elected=False)


async def test_replay_outcomes(redis: aioredis.Redis, queue: Queue) -> None:
    c = queue.commands
    job_id, token = await _claimed(redis, queue, attempts=1)
    await scripts.run(redis, c.fail(job_id, token, "E: x", "", 0, False, attempts=1))
    assert await scripts.run(redis, c.replay(job_id)) is ReplayOutcome.REPLAYED
    assert await scripts.run(redis, c.replay(job_id)) is ReplayOutcome.NOT_DEAD
    assert await scripts.run(redis, c.replay("nope")) is ReplayOutcome.MISSING


async def test_extend_leases_reports_each_lease(redis: aioredis.Redis, queue: Queue) -> None:
    held = await _claimed(redis, queue)
    lost = await _stolen(redis, queue)
    assert await scripts.run(
        redis, queue.commands.extend_leases("w1", {"pod": "p"}, [held, lost], 60_000)
    ) == [
        True,
        False,
    ]


async def test_a_reply_that_does_not_parse_fails_only_its_own_call(
    redis: aioredis.Redis, queue_name: str
) -> None:
    commands = QueueCommands(queue_name)
    good = commands.purge_dead()
    broken = ScriptCall(good.script, good.keys, good.args, lambda reply: 1 / 0)
    settled = await scripts.run_settled(redis, [good, broken, good])
    assert settled[0] == 0 and settled[2] == 0
    assert isinstance(settled[1], ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        await scripts.run_many(redis, [good, broken])
