"""The dead-letter API, the same on ``Queue`` and ``SyncQueue``, including garbage in the dead set.

| case                                              | expectation                                            |
| ------------------------------------------------- | ------------------------------------------------------ |
| dead set holds an id with no job, and a live job  | replay_all_dead ends, replays the dead, drops the rest |
| purge by ids                                      | only those dead jobs; a live job's id is left alone    |
| purge everything                                  | every dead job; a live job listed as dead survives     |
| ``dead_jobs(limit=0)``, negative limit or offset  | none; ValueError                                       |
| the two producers                                 | the same public methods, with the same parameters      |
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from worker_runtime import JobState, Queue, SyncQueue, connect_sync, scripts
from worker_runtime.commands import QueueCommands

WORKER = "worker-dead-letter-test"
Api = Callable[..., Awaitable[Any]]


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis)
    yield q
    await q.aclose()


@pytest.fixture
def sync_queue(redis_url: str, queue_name: str) -> Iterator[SyncQueue]:
    client = connect_sync(redis_url)
    yield SyncQueue(queue_name, client)
    client.close()


@pytest.fixture(params=["async", "sync"])
def api(request: pytest.FixtureRequest, queue: Queue, sync_queue: SyncQueue) -> Callable[[str], Api]:
    """``api("replay_all_dead")(...)``: the method of either producer, awaitable either way."""

    def method(name: str) -> Api:
        if request.param == "async":
            return getattr(queue, name)  # type: ignore[no-any-return]
        blocking = getattr(sync_queue, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return blocking(*args, **kwargs)

        return call

    return method


async def _dead(redis: aioredis.Redis, queue: Queue, count: int) -> list[str]:
    """``count`` jobs dead-lettered by a permanent failure (through the real scripts)."""
    commands = QueueCommands(queue.name)
    ids = []
    for i in range(count):
        job = await queue.enqueue("job", {"i": i})
        claimed = await scripts.run(redis, commands.claim(WORKER, 1, 60_000, -1))
        assert [j.id for j in claimed.jobs] == [job.id]
        await scripts.run(
            redis, commands.fail(job.id, claimed.jobs[0].token, "Permanent: no", "", 0, True, attempts=1)
        )
        ids.append(job.id)
    return ids


async def _garbage(redis: aioredis.Redis, queue: Queue) -> tuple[str, str]:
    """An id in the dead set with no job behind it, and a waiting job listed there too."""
    keys = queue.commands.keys
    live = (await queue.enqueue("job", "alive")).id
    await redis.zadd(keys.dead, {"ghost": 1, live: 2})
    return "ghost", live


async def test_replay_all_dead_ends_whatever_the_dead_set_holds(
    redis: aioredis.Redis, queue: Queue, api: Callable[[str], Api]
) -> None:
    dead = await _dead(redis, queue, 3)
    _, live = await _garbage(redis, queue)
    assert await api("replay_all_dead")(batch=2) == 3
    assert await redis.zcard(queue.commands.keys.dead) == 0  # the ghost and the stray entry dropped
    for job_id in [*dead, live]:
        assert (await queue.get_job(job_id)).state is JobState.WAITING
    assert (await queue.get_job(live)).payload == "alive"
    assert (await queue.stats()).waiting == 4


async def test_purge_by_id_deletes_only_those_dead_jobs(
    redis: aioredis.Redis, queue: Queue, api: Callable[[str], Api]
) -> None:
    dead = await _dead(redis, queue, 3)
    _, live = await _garbage(redis, queue)
    assert await api("purge_dead")([dead[0], dead[2], live, "never-existed"]) == 2
    assert [j.id for j in await api("dead_jobs")()] == [dead[1]]
    assert (await queue.get_job(live)).state is JobState.WAITING  # listed as dead, but it is not
    assert await api("purge_dead")([]) == 0
    assert (await queue.stats()).dead == 2  # dead[1], and the ghost the call did not name


async def test_purge_everything_spares_a_live_job_listed_as_dead(
    redis: aioredis.Redis, queue: Queue, api: Callable[[str], Api]
) -> None:
    await _dead(redis, queue, 3)
    _, live = await _garbage(redis, queue)
    assert await api("purge_dead")() == 3
    assert await redis.zcard(queue.commands.keys.dead) == 0
    assert (await queue.get_job(live)).state is JobState.WAITING


async def test_dead_jobs_limits(redis: aioredis.Redis, queue: Queue, api: Callable[[str], Api]) -> None:
    await _dead(redis, queue, 3)
    # Oldest first; jobs that died in the same millisecond come in id order.
    dead = [i.decode() for i in await redis.zrange(queue.commands.keys.dead, 0, -1)]
    assert await api("dead_jobs")(limit=0) == []
    assert [j.id for j in await api("dead_jobs")(limit=2)] == dead[:2]
    assert [j.id for j in await api("dead_jobs")(offset=1, limit=5)] == dead[1:]
    for bad in ({"limit": -1}, {"offset": -1}, {"limit": 1.5}):
        with pytest.raises(ValueError, match="must be an int >= 0"):
            await api("dead_jobs")(**bad)


async def test_replay_one(redis: aioredis.Redis, queue: Queue, api: Callable[[str], Api]) -> None:
    (job_id,) = await _dead(redis, queue, 1)
    assert await api("replay_dead")(job_id) is True
    assert await api("replay_dead")(job_id) is False  # waiting now, not dead
    assert await api("replay_dead")("never-existed") is False
    assert (await api("stats")()).waiting == (await api("observe")()).waiting == 1


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_both_producers_have_the_same_api() -> None:
    """The README promises SyncQueue is Queue's API, blocking; only ``aclose`` (which stops the
    async enqueue coalescer, something the blocking producer does not have) is Queue's alone."""
    async_api, sync_api = _public(Queue), _public(SyncQueue)
    assert set(async_api) - {"aclose"} == set(sync_api)
    for name, signature in sync_api.items():
        assert list(signature.parameters) == list(async_api[name].parameters), name
        assert inspect.iscoroutinefunction(getattr(Queue, name)), name
        assert not inspect.iscoroutinefunction(getattr(SyncQueue, name)), name
