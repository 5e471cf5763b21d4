"""Worker: handlers run, results and errors recorded, retries, dead-letter set, timeouts, order.

| behaviour                           | shown by                                                  |
| ----------------------------------- | --------------------------------------------------------- |
| async and sync handlers, results    | both complete; result, progress, timestamps recorded      |
| concurrency cap                     | never more handlers at once than `concurrency`            |
| FIFO within priority                | one-slot worker runs jobs in (priority, enqueue) order    |
| delayed jobs do not run early       | start time >= enqueue time + delay                        |
| backoff grows                       | gaps between attempts grow, each >= half its ceiling       |
| poison job                          | dead after its attempts, error and traceback kept         |
| Permanent error                     | dead after one attempt                                    |
| payload failing its model           | dead after one attempt with the validation error          |
| unknown job name                    | dead after one attempt                                    |
| timeout                             | attempt fails with "timed out", next attempt runs         |
| dead-letter API                     | list, replay one, replay all, purge                       |
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import pydantic
import pytest

from tests.integration.runtime import sync_handlers
from tests.integration.runtime.conftest import WorkerFactory
from tests.support.wait import wait_for
from worker_runtime import App, Backoff, Job, JobContext, JobState, Permanent, Queue


async def finished(
    queue: Queue, job_id: str, state: JobState = JobState.COMPLETED, within: float = 10
) -> Job:
    async def check() -> Job | None:
        job = await queue.get_job(job_id)
        return job if job.state is state else None

    return await wait_for(check, timeout=within, message=f"job {job_id} reaches {state}")


async def test_async_and_sync_handlers_complete_with_results(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job()
    async def add(ctx: JobContext, payload: dict[str, int]) -> int:
        await ctx.set_progress(50)
        return payload["a"] + payload["b"]

    app.job()(sync_handlers.shout)  # a plain def: it runs in a child process of the worker

    a = await queue.enqueue("add", {"a": 2, "b": 3})
    s = await queue.enqueue("shout", "hi")
    start_worker(app)
    job_a, job_s = await finished(queue, a.id), await finished(queue, s.id)
    assert job_a.result == 5 and job_a.progress == 50 and job_a.attempts_made == 1
    assert job_s.result["text"] == "HI" and job_s.result["pid"] != os.getpid()
    assert job_s.progress == {"step": "upper"}
    assert job_a.created_at <= job_a.started_at <= job_a.finished_at  # type: ignore[operator]
    stats = await queue.stats()
    assert (stats.completed, stats.completed_total, stats.active, stats.waiting) == (2, 2, 0, 0)


async def test_concurrency_cap_is_respected(app: App, queue: Queue, start_worker: WorkerFactory) -> None:
    running, peak = 0, 0

    @app.job()
    async def slow(ctx: JobContext, payload: None) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    jobs = [await queue.enqueue("slow") for _ in range(12)]
    start_worker(app, concurrency=3)
    for job in jobs:
        await finished(queue, job.id)
    assert peak == 3


async def test_fifo_within_priority_lower_number_first(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    order: list[str] = []

    @app.job()
    async def record(ctx: JobContext, payload: str) -> None:
        order.append(payload)

    plan = [("low-1", 10), ("high-1", -5), ("mid-1", 0), ("low-2", 10), ("high-2", -5), ("mid-2", 0)]
    jobs = [await queue.enqueue("record", label, priority=p) for label, p in plan]
    start_worker(app, concurrency=1)
    for job in jobs:
        await finished(queue, job.id)
    assert order == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]


async def test_delayed_job_does_not_run_early(app: App, queue: Queue, start_worker: WorkerFactory) -> None:
    started: dict[str, float] = {}

    @app.job()
    async def stamp(ctx: JobContext, payload: None) -> None:
        started[ctx.job_id] = time.time()

    start_worker(app)
    enqueued_at = time.time()
    later = await queue.enqueue("stamp", delay=0.6)
    now = await queue.enqueue("stamp")
    await finished(queue, now.id)
    assert later.id not in started
    await finished(queue, later.id)
    assert started[later.id] >= enqueued_at + 0.6 - 0.005  # server and client clocks agree to ms
    assert started[now.id] < enqueued_at + 0.6


async def test_backoff_intervals_grow(app: App, queue: Queue, start_worker: WorkerFactory) -> None:
    starts: list[float] = []

    @app.job()
    async def flaky(ctx: JobContext, payload: None) -> None:
        starts.append(time.monotonic())
        raise RuntimeError(f"attempt {ctx.attempt} failed")

    job = await queue.enqueue("flaky", attempts=5, backoff=Backoff(base=0.1, cap=10))
    start_worker(app)
    dead = await finished(queue, job.id, JobState.DEAD, within=15)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    print(f"attempt gaps: {[round(g, 3) for g in gaps]}")
    assert len(starts) == 5 and dead.attempts_made == 5
    for attempt, gap in enumerate(gaps, start=1):
        assert gap >= Backoff(0.1, 10).ceiling(attempt) / 2
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))


async def test_poison_job_is_dead_lettered_with_its_error(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job()
    async def poison(ctx: JobContext, payload: dict[str, str]) -> None:
        raise ValueError(f"cannot handle {payload['kind']}")

    job = await queue.enqueue("poison", {"kind": "bad"}, attempts=3, backoff=Backoff(0.01, 0.02))
    start_worker(app)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert dead.attempts_made == 3
    assert dead.error == "ValueError: cannot handle bad"
    assert dead.traceback is not None and "raise ValueError" in dead.traceback
    assert dead.payload == {"kind": "bad"}
    stats = await queue.stats()
    assert (stats.dead, stats.dead_total, stats.failed_total) == (1, 1, 3)


class Order(pydantic.BaseModel):
    order_id: int


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("charge", {"order_id": 1, "declined": True}, "Permanent: card declined"),
        ("charge", {"order_id": "not-a-number"}, "does not validate"),
        ("missing", {}, "no handler for job 'missing'"),
    ],
)
async def test_unrecoverable_jobs_skip_retries(
    app: App, queue: Queue, start_worker: WorkerFactory, redis: Any, name: str, payload: Any, error: str
) -> None:
    calls = 0

    @app.job()
    async def charge(ctx: JobContext, payload: Order) -> None:
        nonlocal calls
        calls += 1
        raise Permanent("card declined")

    # A producer without the app cannot check names or models: the worker must catch them.
    blind = Queue(app.queue, redis)
    job = await blind.enqueue(name, payload, attempts=5)
    start_worker(app)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert dead.attempts_made == 1 and error in (dead.error or "")
    assert calls == (1 if "Permanent" in error else 0)
    await blind.aclose()


async def test_timeout_fails_the_attempt_and_retries(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job()
    async def sometimes_slow(ctx: JobContext, payload: None) -> str:
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return "fast enough"

    job = await queue.enqueue("sometimes_slow", timeout=0.2, backoff=Backoff(0.01, 0.01))
    start_worker(app)
    done = await finished(queue, job.id)
    assert done.result == "fast enough" and done.attempts_made == 2
    assert done.error == "TimeoutError: job timed out after 0.2s"  # the failed attempt's error is kept


async def test_dead_letter_list_replay_purge(app: App, queue: Queue, start_worker: WorkerFactory) -> None:
    healed = False

    @app.job()
    async def fragile(ctx: JobContext, payload: int) -> int:
        if not healed:
            raise Permanent("downstream is down")
        return payload

    jobs = [await queue.enqueue("fragile", i) for i in range(4)]
    start_worker(app)
    for job in jobs:
        await finished(queue, job.id, JobState.DEAD)
    dead = await queue.dead_jobs()
    assert sorted(j.payload for j in dead) == [0, 1, 2, 3]
    assert all(j.error == "Permanent: downstream is down" for j in dead)

    healed = True
    assert await queue.replay_dead(jobs[0].id) is True
    assert await queue.replay_dead(jobs[0].id) is False  # no longer dead
    assert (await finished(queue, jobs[0].id)).result == 0
    healed = False
    await finished(queue, jobs[0].id)
    assert (await queue.stats()).dead == 3

    healed = True
    assert await queue.replay_all_dead() == 3
    for job in jobs[1:]:
        await finished(queue, job.id)
    healed = False
    purge_me = await queue.enqueue("fragile", 9)
    await finished(queue, purge_me.id, JobState.DEAD)
    assert await queue.purge_dead() == 1
    assert (await queue.stats()).dead == 0 and await queue.dead_jobs() == []
