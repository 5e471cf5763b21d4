"""Flow control across workers: pause and resume, a cap on jobs running at once, a rate limit on
job starts. Held in the claim script, so it holds for every worker of the queue at once."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.processes import Fleet
from tests.support.wait import wait_for
from worker_runtime import App, JobContext, JobSpec, Queue, RateLimited, scripts
from worker_runtime import worker as worker_module
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import FlowConfig, Hold, RateLimit


async def _starts(redis: aioredis.Redis, queue: str) -> list[tuple[int, int]]:
    """(start ms, handlers running then) of every ``tracked`` run so far."""
    raw = await redis.lrange(worker_apps.starts_key(queue), 0, -1)  # type: ignore[misc]
    return [(int(at), int(n)) for at, n in (item.decode().split(":") for item in raw)]


async def test_pause_holds_every_claim_and_resume_wakes_the_held_workers(
    redis: aioredis.Redis,
    app: App,
    queue: Queue,
    start_worker: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocks far longer than any wait below: a resume that did not wake the held workers would
    # leave them asleep past the deadline.
    monkeypatch.setattr(worker_module, "MAX_BLOCK_SECONDS", 30.0)
    release = asyncio.Event()
    started: list[str] = []

    @app.job()
    async def step(ctx: JobContext, payload: None) -> None:
        started.append(ctx.job_id)
        await release.wait()

    workers = [start_worker(app, concurrency=2) for _ in range(3)]
    await queue.enqueue("step", job_id="in-flight")
    await wait_for(lambda: started == ["in-flight"], message="the first job runs")

    assert await queue.pause() == FlowConfig(paused=True)
    await queue.enqueue_many([JobSpec("step", job_id=f"held-{i}") for i in range(6)])
    marker = QueueCommands(queue.name).keys.marker

    async def all_held() -> bool:
        await redis.zadd(marker, {"0": 0})  # as an enqueue does: wake a worker blocked on the marker
        return all(w.held is Hold.PAUSED for w in workers)

    await wait_for(all_held, interval=0.1, message="every worker's claim is held by the pause")
    # Each enqueue wakes an idle worker, whose claim the pause holds: nothing more starts.
    await asyncio.sleep(1.5)  # one poll of an unpatched worker (1 s), and a half
    stats = await queue.stats()
    assert (stats.waiting, stats.active, stats.flow.paused) == (6, 1, True)
    assert started == ["in-flight"]
    release.set()  # the job running when the queue was paused finishes
    await wait_for(async_completed(queue, 1), message="the in-flight job completes")
    assert (await queue.stats()).waiting == 6

    assert await queue.resume() == FlowConfig()
    # Held workers left alone would sleep out their 30 s block (or a read timeout of a few
    # seconds): 3 s is many times what a woken worker needs, and less than either.
    await wait_for(async_completed(queue, 7), timeout=3, message="the held jobs run at once after resume")
    assert all(w.healthy for w in workers)


def async_completed(queue: Queue, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await queue.stats()).completed_total >= count

    return check


async def test_a_held_claim_says_why_and_takes_nothing(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    commands = QueueCommands(queue_name)
    await queue.enqueue("x", job_id="a")
    await queue.pause()
    claimed = await scripts.run(redis, commands.claim("w", 5, 1000, 10))
    assert (claimed.held, claimed.held_ms, claimed.jobs) == (Hold.PAUSED, None, [])
    await queue.set_max_running(0)
    await queue.resume()
    claimed = await scripts.run(redis, commands.claim("w", 5, 1000, 10))
    assert (claimed.held, claimed.jobs) == (Hold.CAPPED, [])
    await queue.set_max_running(None)
    await queue.set_rate_limit(1, 60)
    claimed = await scripts.run(redis, commands.claim("w", 5, 1000, 10))
    assert claimed.held is None and [j.id for j in claimed.jobs] == ["a"]
    await queue.enqueue("x", job_id="b")
    claimed = await scripts.run(redis, commands.claim("w", 5, 1000, 10))
    assert claimed.held is Hold.RATE_LIMITED and claimed.jobs == []
    assert claimed.held_ms is not None and 0 < claimed.held_ms <= 60_000
    assert (await queue.stats()).rate_used == 1
    await queue.aclose()


async def test_bad_flow_settings_are_refused_before_anything_is_written(queue: Queue) -> None:
    for jobs, seconds in [(0, 1.0), (-1, 1.0), (10, 0.0), (10, float("nan")), (True, 1.0), (1.5, 1.0)]:
        with pytest.raises(ValueError, match="rate limit"):
            await queue.set_rate_limit(jobs, seconds)  # type: ignore[arg-type]
    for cap in [-1, 1.5, "3", True]:
        with pytest.raises(ValueError, match="max_running"):
            await queue.set_max_running(cap)  # type: ignore[arg-type]
    assert await queue.flow() == FlowConfig()


async def test_a_cap_of_three_is_never_exceeded_across_four_worker_processes(
    redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    assert (await queue.set_max_running(3)).max_running == 3
    jobs = 60
    await queue.enqueue_many([JobSpec("tracked", 0.05) for _ in range(jobs)])
    fleet = Fleet(redis_url, queue_name, size=4, env={"JOBQUEUE_CONCURRENCY": "4"}).start()
    active_seen: list[int] = []
    try:

        async def drained() -> bool:
            active_seen.append(await redis.zcard(QueueCommands(queue_name).keys.active))
            return (await queue.stats()).completed_total == jobs

        await wait_for(drained, timeout=60, interval=0.005, message="every job ran under the cap")
    finally:
        await fleet.aclose()
        await queue.aclose()
    running = [n for _, n in await _starts(redis, queue_name)]
    assert len(running) == jobs
    assert max(active_seen) <= 3 and max(running) <= 3, (max(active_seen), max(running))
    assert max(running) == 3  # the cap is a cap, not a trickle: three ran together


async def test_a_rate_limit_of_50_per_second_holds_within_5_percent_over_a_minute(
    redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    await queue.set_rate_limit(50, 1.0)
    minute_ms, rate = 60_000, 50
    await queue.enqueue_many([JobSpec("tracked", 0.01) for _ in range(rate * 64)])
    fleet = Fleet(redis_url, queue_name, size=4, env={"JOBQUEUE_CONCURRENCY": "10"}).start()
    try:

        async def a_minute_passed() -> bool:
            starts = await _starts(redis, queue_name)
            return bool(starts) and starts[-1][0] - starts[0][0] >= minute_ms + 500

        await wait_for(a_minute_passed, timeout=100, interval=0.5, message="a minute of starts")
        stats = await queue.stats()
    finally:
        await fleet.aclose()
        await queue.aclose()
    assert stats.flow.rate_limit == RateLimit(50, 1.0)
    times = sorted(at for at, _ in await _starts(redis, queue_name))
    first = times[0]
    in_minute = sum(1 for at in times if at < first + minute_ms)
    expected = rate * minute_ms / 1000
    print(f"started within the minute: {in_minute} (limit {expected:.0f})")
    assert abs(in_minute - expected) <= 0.05 * expected, in_minute
    # Nor any shorter span beyond its share: windows open at least a second apart, so 5 s of
    # starts overlap at most 6 windows (the first second left out: there the handlers of freshly
    # started processes may begin after the next window's).
    span, most = 5000, 0
    later = [at for at in times if at >= first + 1000]
    for i, at in enumerate(later):
        most = max(most, bisect.bisect_left(later, at + span) - i)
    assert most <= rate * (span // 1000 + 1), most


async def test_the_probe_reads_the_flow_control(queue: Queue) -> None:
    await queue.set_rate_limit(20, 2.0)
    await queue.set_max_running(5)
    await queue.pause()
    stats = await queue.stats()
    assert stats.flow == FlowConfig(paused=True, rate_limit=RateLimit(20, 2.0), max_running=5)
    assert stats.rate_used == 0
    await queue.set_rate_limit(None)
    await queue.set_max_running(None)
    assert (await queue.resume()) == FlowConfig()
    assert (await queue.stats()).flow == FlowConfig()


async def test_a_breaker_opens_after_n_failures_tries_half_open_and_closes(
    redis: aioredis.Redis, app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    downstream_up = False
    calls: list[str] = []

    @app.job(attempts=1)
    async def call(ctx: JobContext, payload: None) -> None:
        calls.append(ctx.job_id)
        if not downstream_up:
            raise RuntimeError("503 from the downstream")

    @app.job()
    async def other(ctx: JobContext, payload: None) -> None:
        calls.append(ctx.job_id)

    await queue.set_breaker(3, cooloff_seconds=1.0)
    await queue.enqueue_many([JobSpec("call", job_id=f"c{i}") for i in range(10)])
    start_worker(app, concurrency=1)

    async def breaker(state: str) -> bool:
        stats = await queue.stats()
        return [(b.job, b.state) for b in stats.breakers] == [("call", state)]

    await wait_for(lambda: breaker("open"), message="the breaker opens")
    opened = await queue.stats()
    assert (opened.dead_total, opened.completed_total) == (3, 0)  # 3 failures in a row, no more
    await queue.enqueue("other", job_id="o1")  # another job name is not held by it
    await wait_for(lambda: "o1" in calls, message="another job name runs while the breaker is open")
    # After the cool-off one job tries, fails, and the breaker opens again: one failure more.
    await wait_for(
        lambda: len([c for c in calls if c.startswith("c")]) == 4, timeout=10, message="half-open try"
    )
    await wait_for(lambda: breaker("open"), message="open again after the failed try")
    assert (await queue.stats()).dead_total == 4
    downstream_up = True
    await wait_for(async_completed(queue, 7), timeout=15, message="the next try closes it, the rest run")
    final = await queue.stats()
    assert final.breakers == () and (final.dead_total, final.completed_total) == (4, 7)
    assert len(calls) == 11  # every job ran once: 3 + 1 failed, 6 after the close, and o1


async def test_rate_limited_from_a_handler_delays_the_job_without_an_attempt_and_can_hold_the_queue(
    redis: aioredis.Redis, app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    attempts: list[int] = []

    @app.job(attempts=1)
    async def call(ctx: JobContext, payload: None) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise RateLimited(0.5, hold_queue=True)  # "429, retry after 0.5 s"

    @app.job()
    async def other(ctx: JobContext, payload: None) -> None: ...

    start_worker(app, concurrency=4)
    await queue.enqueue("call", job_id="c")
    keys = QueueCommands(queue.name).keys
    held = await wait_for(lambda: redis.hget(keys.flow, "held_until"), message="the queue is held")
    await queue.enqueue("other", job_id="o")
    await wait_for(async_completed(queue, 2), timeout=10, message="both ran once the hold was over")
    assert attempts == [1, 1]  # the postponed attempt was not counted (attempts=1: no retry left)
    stats = await queue.stats()
    assert (stats.failed_total, stats.dead_total) == (0, 0)
    other_started = int(await redis.hget(keys.job("o"), "started_at"))  # type: ignore[arg-type]
    call_started = int(await redis.hget(keys.job("c"), "started_at"))  # type: ignore[arg-type]
    assert other_started >= int(held) and call_started >= int(held)  # nothing started while held
