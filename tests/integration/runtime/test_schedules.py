"""Recurring jobs: exactly one enqueue per tick however many workers race to fire it, across
restarts; the missed-tick policies; schedules declared on the app, managed through the API and
refused when they cannot fire."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime import worker_apps
from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.processes import Fleet
from tests.support.wait import wait_for
from worker_runtime import App, JobContext, Queue, operations, schedule_ops, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.replies import FireOutcome
from worker_runtime.schedules import MISFIRE_GRACE_SECONDS, Schedule

EVERY_MS = 200


async def _next_tick(redis: aioredis.Redis, queue: str, name: str) -> int:
    score = await redis.zscore(QueueCommands(queue).keys.schedule_next, name)
    assert score is not None, f"schedule {name} has no next tick"
    return int(score)


async def test_ten_workers_racing_over_100_ticks_enqueue_exactly_100_jobs(
    redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    keys = QueueCommands(queue_name).keys
    fleet = Fleet(redis_url, queue_name, size=10).start()
    try:
        await wait_for(lambda: redis.hlen(keys.workers), timeout=60, message="the workers are up")
        assert await queue.add_schedule("tick", "work", every=EVERY_MS / 1000, payload=0)
        first = await _next_tick(redis, queue_name, "tick")
        last = first + 99 * EVERY_MS
        restarted = 0

        async def hundred_fired() -> bool:
            nonlocal restarted
            fired = (await _next_tick(redis, queue_name, "tick") - first) // EVERY_MS
            if fired >= 30 * (restarted + 1) and restarted < 2:
                for process in fleet.processes[restarted * 4 : restarted * 4 + 4]:
                    process.send_signal(signal.SIGKILL)  # the fleet starts them again
                restarted += 1
            return fired >= 100

        await wait_for(hundred_fired, timeout=120, interval=0.05, message="100 ticks fired")
        assert await queue.remove_schedule("tick")
        ids = sorted(
            [
                int(key.decode().rsplit(":", 1)[1])
                async for key in redis.scan_iter(match=keys.job("tick:*"), count=1000)
            ]
        )
        assert len(fleet.exits) >= 8, fleet.exits  # the kills happened, and their workers came back
        runs = worker_apps.runs_key(queue_name)
        await wait_for(lambda: redis.hlen(runs), timeout=60, message="the jobs ran")
        await wait_for(async_len(redis, runs, len(ids)), timeout=60, message="every scheduled job ran")
    finally:
        await fleet.aclose()
        await queue.aclose()
    expected = list(range(first, last + 1, EVERY_MS))
    # Exactly one job per tick: none missing, none twice (the fence, not only the idempotent id:
    # a second enqueue of a tick would have counted).
    assert [i for i in ids if i <= last] == expected
    counted = int(await redis.hget(keys.counters, "enqueued") or 0)  # type: ignore[arg-type]
    assert counted == len(ids)
    # Each ran once, but a job whose worker was killed after its run and before its ack: that
    # one ran again (at least once), and its hash says its worker was lost.
    ran = {key.decode(): int(n) for key, n in (await redis.hgetall(runs)).items()}  # type: ignore[misc]
    assert set(ran.values()) <= {1, 2}, ran
    for job_id in (j for j, n in ran.items() if n > 1):
        stalls = await redis.hget(keys.job(job_id), "stalls")  # type: ignore[misc]
        assert int(stalls or 0) >= 1, f"{job_id} ran twice without a lost worker"


def async_len(redis: aioredis.Redis, key: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await redis.hlen(key) >= count)  # type: ignore[misc]

    return check


async def test_a_tick_missed_by_over_the_grace_is_skipped_or_caught_up_once(
    redis: aioredis.Redis, queue_name: str
) -> None:
    commands = QueueCommands(queue_name)
    queue = Queue(queue_name, redis)
    for name, missed in (("skipper", "skip"), ("catcher", "catch_up")):
        await queue.add_schedule(name, "job", every=10, missed=missed)
    seconds, micros = await redis.time()  # type: ignore[misc]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    stale = (now_ms - round(MISFIRE_GRACE_SECONDS * 1000) - 30_000) // 10_000 * 10_000
    await redis.zadd(commands.keys.schedule_next, {"skipper": stale, "catcher": stale})
    fired = await operations.run_async(redis, schedule_ops.fire_due(commands))
    assert (fired.enqueued, fired.skipped) == (1, 1)
    assert await redis.exists(commands.keys.job(f"catcher:{stale}")) == 1
    assert await redis.exists(commands.keys.job(f"skipper:{stale}")) == 0
    for info in await queue.schedules():
        assert info.next_ms is not None and info.next_ms > now_ms  # the next tick is after now
    # Fired again: nothing is due, so nothing more is enqueued (the tick is not fired twice).
    again = await operations.run_async(redis, schedule_ops.fire_due(commands))
    assert again.enqueued == 0 and again.next_in_ms is not None and again.next_in_ms > 0
    await queue.aclose()


async def test_a_stale_fire_enqueues_nothing(redis: aioredis.Redis, queue_name: str) -> None:
    commands = QueueCommands(queue_name)
    schedule = Schedule("s", "job", every=1)
    await operations.run_async(redis, schedule_ops.add(commands, [schedule]))
    tick = await _next_tick(redis, queue_name, "s")
    first = await scripts.run(redis, commands.fire_schedule(schedule, tick, tick + 1000, enqueue=True))
    late = await scripts.run(redis, commands.fire_schedule(schedule, tick, tick + 1000, enqueue=True))
    assert (first, late) == (FireOutcome.ENQUEUED, FireOutcome.STALE)
    assert await _next_tick(redis, queue_name, "s") == tick + 1000


async def test_a_declared_cron_fires_through_the_worker_and_a_restart_keeps_its_tick(
    redis: aioredis.Redis, app: App, start_worker: WorkerFactory
) -> None:
    ran: list[str] = []

    @app.cron(every=0.5, payload={"report": "daily"}, name="reports")
    async def report(ctx: JobContext, payload: dict[str, str]) -> None:
        assert payload == {"report": "daily"}
        ran.append(ctx.job_id)

    worker = start_worker(app)
    await wait_for(lambda: len(ran) >= 2, timeout=10, message="two ticks ran")
    assert all(job_id.startswith("reports:") for job_id in ran)
    queue = Queue(app.queue, redis)
    (info,) = await queue.schedules()
    assert info.schedule.name == "reports" and info.schedule.job == "report" and info.schedule.every == 0.5
    # Declaring it again (a worker restart) keeps the stored tick: no tick fired twice, none missed.
    tick = info.next_ms
    assert not await queue.add_schedule("reports", "report", every=0.5, payload={"report": "daily"})
    assert worker.healthy and tick is not None
    await queue.aclose()


def test_schedules_that_cannot_fire_are_refused_at_declaration() -> None:
    app = App("q")
    bad = [
        ({"cron": "61 * * * *"}, "not a valid cron expression"),
        ({"cron": "* * * * *", "every": 5}, "exactly one of cron and every"),
        ({}, "exactly one of cron and every"),
        ({"every": 0}, "every must be seconds"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 5, "missed": "later"}, "missed must be skip or catch_up"),
        ({"every": 5, "name": "has space"}, "schedule name"),
    ]
    for options, reason in bad:
        with pytest.raises(ValueError, match=reason):

            @app.cron(**options)  # type: ignore[arg-type]
            async def job(ctx: JobContext, payload: None) -> None: ...


async def test_the_api_refuses_a_bad_schedule_and_lists_the_next_fire(
    redis: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    with pytest.raises(ValueError, match="not a valid cron expression"):
        await queue.add_schedule("x", "job", cron="every day")
    assert await queue.schedules() == []
    assert await queue.add_schedule("nightly", "job", cron="0 3 * * *", tz="Europe/Berlin")
    (info,) = await queue.schedules()
    schedule = info.schedule
    assert info.next_ms is not None and schedule.next_after(info.next_ms - 1) == info.next_ms
    assert await queue.remove_schedule("nightly") and await queue.schedules() == []
    assert not await queue.remove_schedule("nightly")
    await queue.aclose()
