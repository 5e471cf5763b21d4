"""Circuit breakers opened by a failure ratio over a sliding window, with real worker processes
on the real server: failures mixed with successes open it although never many in a row, a ratio
under the threshold never does, and old failures slide out of the window."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.processes import Fleet
from tests.integration.runtime.test_cli import jobqueue, one_line_error
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import Breaker


@dataclass(frozen=True)
class Run:
    """One run of ``worker_apps.flaky``: its job, its breaker's state when it started, failed or not."""

    job: str
    state: str
    failed: bool


async def _runs(redis: aioredis.Redis, queue: str) -> list[Run]:
    raw = await redis.lrange(worker_apps.outcomes_key(queue), 0, -1)  # type: ignore[misc]
    runs = []
    for item in raw:
        job, state, outcome = item.decode().split(":")
        runs.append(Run(job, state, outcome == "F"))
    return runs


def _finished(queue: Queue, jobs: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await queue.stats()
        return stats.completed_total + stats.dead_total >= jobs

    return check


def _longest_run_of_failures(runs: list[Run]) -> int:
    longest = current = 0
    for run in runs:
        current = current + 1 if run.failed else 0
        longest = max(longest, current)
    return longest


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis)
    yield q
    await q.aclose()


async def test_a_failure_ratio_opens_the_breaker_without_a_run_of_failures_then_half_open_closes_it(
    redis: aioredis.Redis, redis_url: str, queue: Queue
) -> None:
    # No count in a row configured at all: only the ratio can open it.
    config = await queue.set_breaker(None, 3.0, failure_ratio=0.5, window_seconds=5, min_attempts=10)
    assert config.breaker == Breaker(None, 3.0, 0.5, 5.0, 10)
    jobs = 30
    # Two of every three fail (67 %), never three in a row in the order enqueued.
    await queue.enqueue_many([JobSpec("flaky", i % 3 != 2, job_id=f"j{i:02}") for i in range(jobs)])
    fleet = Fleet(redis_url, queue.name, size=2, env={"JOBQUEUE_CONCURRENCY": "1"}).start()
    try:

        async def opened() -> bool:
            return [(b.job, b.state) for b in (await queue.stats()).breakers] == [("flaky", "open")]

        await wait_for(opened, timeout=15, message="the ratio opens the breaker")
        await redis.set(worker_apps.downstream_key(queue.name), "up")  # the next try will succeed
        before = await _runs(redis, queue.name)
        assert len(before) < jobs  # claims of the name stopped
        failed = sum(r.failed for r in before if r.state == "closed")
        print(f"opened after {len(before)} runs, {failed} failed, at most "
              f"{_longest_run_of_failures(before)} in a row")  # fmt: skip
        # The ratio opened it: at least min attempts, at least half of them failed.
        assert len(before) >= 10 and failed * 2 >= len([r for r in before if r.state == "closed"])
        await wait_for(_finished(queue, jobs), timeout=15, message="half-open closes it, the rest run")
    finally:
        await fleet.aclose()
    runs = await _runs(redis, queue.name)
    assert sorted(r.job for r in runs) == [f"j{i:02}" for i in range(jobs)]  # each job ran once
    half = [i for i, r in enumerate(runs) if r.state == "half"]
    assert len(half) == 1, runs  # one job let through after the cool-off...
    assert not runs[half[0]].failed  # ...its success closed the breaker...
    assert all(r.state == "closed" for r in runs[half[0] + 1 :])  # ...and the others ran after it
    assert all(r.state != "open" or i < half[0] for i, r in enumerate(runs))
    assert (await queue.stats()).breakers == ()


async def test_a_failure_ratio_under_the_threshold_never_opens_it(
    redis: aioredis.Redis, redis_url: str, queue: Queue
) -> None:
    await queue.set_breaker(None, 30.0, failure_ratio=0.5, window_seconds=5, min_attempts=10)
    jobs = 45
    # One of every three fails (33 %): a breaker opened would park the rest for 30 s.
    await queue.enqueue_many([JobSpec("flaky", i % 3 == 0) for i in range(jobs)])
    fleet = Fleet(redis_url, queue.name, size=2, env={"JOBQUEUE_CONCURRENCY": "1"}).start()
    try:
        await wait_for(_finished(queue, jobs), timeout=15, message="every job ran, none parked")
    finally:
        await fleet.aclose()
    runs = await _runs(redis, queue.name)
    assert len(runs) == jobs and sum(r.failed for r in runs) == 15
    assert {r.state for r in runs} == {"closed"}
    stats = await queue.stats()
    assert (stats.breakers, stats.delayed, stats.dead_total) == ((), 0, 15)


@pytest.mark.parametrize(
    ("window_seconds", "opens"),
    [
        (2.0, False),  # the burst is older than the window when the last failure comes
        (30.0, True),  # the same runs in a window that still holds the burst: 5 of 8 failed
    ],
)
async def test_old_failures_slide_out_of_the_window(
    redis: aioredis.Redis, redis_url: str, queue: Queue, window_seconds: float, opens: bool
) -> None:
    await queue.set_breaker(None, 30.0, failure_ratio=0.5, window_seconds=window_seconds, min_attempts=5)
    fleet = Fleet(redis_url, queue.name, size=1).start()
    try:
        # A burst of failures, fewer than min attempts: it opens nothing by itself.
        await queue.enqueue_many([JobSpec("flaky", True) for _ in range(4)])
        await wait_for(_finished(queue, 4), timeout=15, message="the burst of failures ran")
        # Then only successes for longer than the short window, then one failure.
        later = [JobSpec("flaky", False, delay=d) for d in (0.5, 1.5, 2.5)] + [
            JobSpec("flaky", True, delay=3.0)
        ]
        await queue.enqueue_many(later)
        await wait_for(_finished(queue, 8), timeout=15, message="the successes and the last failure ran")
    finally:
        await fleet.aclose()
    runs = await _runs(redis, queue.name)
    assert [r.failed for r in runs] == [True] * 4 + [False] * 3 + [True]
    assert {r.state for r in runs} == {"closed"}
    breakers = [(b.job, b.state) for b in (await queue.stats()).breakers]
    assert breakers == ([("flaky", "open")] if opens else [])
    assert await redis.hlen(QueueCommands(queue.name).keys.breaker_window) <= 10


async def test_the_cli_sets_shows_and_removes_a_ratio_breaker(redis_url: str, queue: Queue) -> None:
    url = ["--redis-url", redis_url]
    both = jobqueue("limit", queue.name, *url, "--breaker", "5/10,ratio=0.5,window=30,min=20")
    assert both.returncode == 0, both
    assert both.stdout.strip() == (
        "claims: running; breakers at 5 failures in a row or a failure ratio of 0.5 among >= 20 attempts "
        "in 30s, cool-off 10s"
    )
    assert (await queue.flow()).breaker == Breaker(5, 10.0, 0.5, 30.0, 20)
    old = jobqueue("limit", queue.name, *url, "--breaker", "3/30")  # the syntax from before the ratio
    assert old.stdout.strip() == "claims: running; breakers at 3 failures in a row, cool-off 30s", old
    assert (await queue.flow()).breaker == Breaker(3, 30.0)
    one_line_error(
        jobqueue("limit", queue.name, *url, "--breaker", "ratio=2"), 2, "--breaker", "failure_ratio"
    )
    one_line_error(jobqueue("limit", queue.name, *url, "--breaker", "cooloff=5"), 2, "--breaker", "neither")
    off = jobqueue("limit", queue.name, *url, "--breaker", "off")
    assert off.stdout.strip() == "claims: running" and (await queue.flow()).breaker is None
