"""Per-group rate limits (a group key given at enqueue: a tenant, an API key), held in the claim.

| case                                   | shown by                                                     |
| -------------------------------------- | ------------------------------------------------------------ |
| a held group never blocks the others   | B drains while A waits on its windows, 3 worker processes    |
| each group's starts per window <= N    | the jobs' own started_at, windows rebuilt as the claim opens |
| nothing lost, nothing run twice        | one receipt per job                                          |
| an idle claim says when a window opens | script level: next_due_in_ms is the group's window's rest    |
| parked jobs keep their priority order  | script level: released and claimed in priority order         |
| parked jobs are waiting jobs           | stats count them (and how many groups hold), get_job says so |
| a parked job can be cancelled          | cancel deletes it and its count; a running one is refused    |
| removing the limit releases them all   | script level                                                 |
| bad group keys are refused             | enqueue raises EnqueueError, nothing written                 |
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.processes import Fleet
from tests.support.wait import wait_for
from worker_runtime import EnqueueError, JobNotFound, JobSpec, Queue, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import RateLimit

LIMIT, WINDOW_MS = 5, 500


async def _started_at(redis: aioredis.Redis, queue: str, ids: list[str]) -> list[int]:
    keys = QueueCommands(queue).keys
    values = [await redis.hget(keys.job(job_id), "started_at") for job_id in ids]  # type: ignore[misc]
    return sorted(int(v) for v in values if v is not None)


def _most_per_window(starts: list[int], window_ms: int) -> int:
    """The most starts in one window, the windows rebuilt as the claim opens them: at the first
    start, for window_ms, the next at the first start after it (2 ms spare for the server clock)."""
    most, i = 0, 0
    while i < len(starts):
        opened = starts[i]
        j = i
        while j < len(starts) and starts[j] < opened + window_ms - 2:
            j += 1
        most, i = max(most, j - i), j
    return most


async def test_a_limited_group_never_holds_up_the_others_across_worker_processes(
    redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    await queue.set_group_rate_limit(LIMIT, WINDOW_MS / 1000)
    a_ids = [f"a-{i}" for i in range(8 * LIMIT)]
    b_ids = [f"b-{i}" for i in range(LIMIT)]
    free_ids = [f"free-{i}" for i in range(20)]
    # A's backlog is in front of the others: they must get past it without waiting on A's windows.
    await queue.enqueue_many([JobSpec("work", 0.01, job_id=i, group="A") for i in a_ids])
    await queue.enqueue_many([JobSpec("work", 0.01, job_id=i, group="B") for i in b_ids])
    await queue.enqueue_many([JobSpec("work", 0.01, job_id=i) for i in free_ids])  # no group at all
    fleet = Fleet(redis_url, queue_name, size=3, env={"JOBQUEUE_CONCURRENCY": "8"}).start()
    runs = worker_apps.runs_key(queue_name)
    held: list[int] = []
    try:

        async def ran(ids: list[str]) -> bool:
            held.append((await queue.stats()).group_held)
            return None not in await redis.hmget(runs, ids)  # type: ignore[misc]

        await wait_for(
            lambda: ran(a_ids + b_ids + free_ids), timeout=30, interval=0.05, message="every job ran"
        )
    finally:
        await fleet.aclose()
    a_starts = await _started_at(redis, queue_name, a_ids)
    b_starts = await _started_at(redis, queue_name, b_ids)
    free_starts = await _started_at(redis, queue_name, free_ids)
    assert len(a_starts) == len(a_ids) and len(b_starts) == len(b_ids)
    # A needs 8 windows: B and the ungrouped jobs were all started before A's third one opened.
    assert max(b_starts + free_starts) < a_starts[2 * LIMIT], (b_starts, free_starts, a_starts)
    assert _most_per_window(a_starts, WINDOW_MS) == LIMIT
    assert a_starts[-1] - a_starts[0] >= (len(a_ids) // LIMIT - 1) * WINDOW_MS - 8
    assert max(held) > 0
    counts = await redis.hgetall(runs)  # type: ignore[misc]
    assert sorted(counts) == sorted(i.encode() for i in a_ids + b_ids + free_ids)
    assert set(counts.values()) == {b"1"}, "a job ran twice"
    stats = await queue.stats()
    assert (stats.waiting, stats.group_held, stats.completed_total) == (0, 0, len(counts))
    await queue.aclose()


async def test_an_idle_claim_reports_when_the_groups_window_reopens(
    redis: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    commands = QueueCommands(queue_name)
    await queue.set_group_rate_limit(2, 30.0)
    await queue.enqueue_many([JobSpec("x", job_id=f"a{i}", group="A") for i in range(5)])
    claimed = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
    assert [j.id for j in claimed.jobs] == ["a0", "a1"]
    assert claimed.parked == 3 and claimed.held is None
    # The idle worker may block until A's window reopens, and no longer: not spin, not oversleep.
    assert claimed.next_due_in_ms is not None and 29_000 < claimed.next_due_in_ms <= 30_000
    again = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
    assert again.jobs == [] and again.parked == 0
    assert again.next_due_in_ms is not None and 0 < again.next_due_in_ms <= claimed.next_due_in_ms
    stats = await queue.stats()
    assert (stats.waiting, stats.group_held, stats.ready, stats.active) == (3, 3, 0, 2)
    assert (await queue.get_job("a4")).state == "waiting"
    # A parked job can be cancelled like any waiting one; a running one cannot.
    assert await queue.cancel("a3") and not await queue.cancel("a3")
    assert not await queue.cancel("a0")
    with pytest.raises(JobNotFound):
        await queue.get_job("a3")
    stats = await queue.stats()
    assert (stats.waiting, stats.group_held) == (2, 2)
    # An ungrouped job is never held, a new group neither.
    await queue.enqueue("x", job_id="free")
    await queue.enqueue("x", job_id="b0", group="B")
    claimed = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
    assert sorted(j.id for j in claimed.jobs) == ["b0", "free"]
    await queue.aclose()


async def test_parked_jobs_come_back_in_priority_order_and_go_when_the_limit_does(
    redis: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    commands = QueueCommands(queue_name)
    await queue.set_group_rate_limit(1, 0.5)
    await queue.enqueue("x", job_id="first", group="A")
    assert [j.id for j in (await scripts.run(redis, commands.claim("w", 1, 60_000, 10))).jobs] == ["first"]
    priorities = {"low": 5, "mid": 0, "high": -5, "mid2": 0}  # a lower number runs first
    for job_id, priority in priorities.items():
        await queue.enqueue("x", job_id=job_id, group="A", priority=priority)
    claimed = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
    assert claimed.jobs == [] and claimed.parked == 4
    order: list[str] = []

    async def one_more() -> bool:
        claimed = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
        order.extend(j.id for j in claimed.jobs)
        return len(order) >= 2

    await wait_for(one_more, timeout=5, interval=0.02, message="two windows reopened")
    assert order == ["high", "mid"]
    assert (await queue.stats()).group_held == 2
    # Without a limit nothing holds them: the next claim releases every parked job.
    config = await queue.set_group_rate_limit(None)
    assert config.group_rate_limit is None
    claimed = await scripts.run(redis, commands.claim("w", 10, 60_000, 10))
    assert [j.id for j in claimed.jobs] == ["mid2", "low"]
    stats = await queue.stats()
    assert (stats.waiting, stats.group_held) == (0, 0)
    assert await redis.exists(commands.keys.group_held, commands.keys.group_waiting_prefix + "A") == 0
    await queue.aclose()


async def test_the_group_limit_reads_back_and_bad_group_keys_are_refused(
    redis: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    config = await queue.set_group_rate_limit(10, 1.0)
    assert config.group_rate_limit == RateLimit(10, 1.0)
    assert (await queue.stats()).flow.group_rate_limit == RateLimit(10, 1.0)
    for bad in ["", 42, "x" * 129]:
        with pytest.raises(EnqueueError, match="group"):
            await queue.enqueue("x", group=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate limit"):
        await queue.set_group_rate_limit(0, 1.0)
    assert (await queue.stats()).enqueued_total == 0
    job = await queue.enqueue("x", group="tenant-42")
    assert (await queue.get_job(job.id)).group == "tenant-42"
    await queue.aclose()
