"""Leases: crash recovery, stale tokens refused, graceful hand-back, heartbeats, lease extension.

| case                                   | expectation                                              |
| -------------------------------------- | -------------------------------------------------------- |
| worker SIGKILLed mid-job               | another worker recovers and completes it; nothing lost   |
| completion with a stale token          | refused (Ack.STALE); the new holder's completion counts once |
| worker lost on the last attempt        | back to waiting: a lost lease is no attempt             |
| SIGTERM, job finishes within grace     | completed                                                |
| SIGTERM, job outlives grace            | handed back: waiting, attempt not counted                |
| job longer than its lease              | lease extended, not recovered, completed once            |
| heartbeat                              | worker entry with pod and in-flight count                |
| lease extended while its ack is landing | the acked job is not taken for lost, its outcome counted |
| the client swallows a cancellation      | the worker still stops (its background loops end)        |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.processes import spawn_worker
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import Ack, App, JobContext, JobState, Queue, Recovery, Worker, WorkerSettings, scripts
from worker_runtime.commands import QueueCommands

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    """A producer without the app: these tests enqueue jobs that subprocess workers know."""
    q = Queue(queue_name, redis)
    yield q
    await q.aclose()


async def test_sigkilled_worker_job_is_recovered_and_completed(
    redis_url: str, queue: Queue, queue_name: str, start_worker: WorkerFactory
) -> None:
    from tests.integration.runtime import worker_apps

    job = await queue.enqueue("sleep", 1.5)
    victim = spawn_worker(redis_url, queue_name)
    try:
        active = await finished(queue, job.id, JobState.ACTIVE, within=20)
        assert active.attempts_made == 1
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
    finally:
        victim.kill()
    rescuer_app = App(queue_name)
    rescuer_app.jobs.update(worker_apps.app.jobs)
    start_worker(rescuer_app, lease_seconds=1.0)
    done = await finished(queue, job.id, within=15)
    # A lost lease is no attempt: the job's second run is still its first attempt.
    assert done.attempts_made == 1 and done.result == "slept 1.5s on attempt 1"
    counters = await queue.redis.hgetall(queue.commands.keys.counters)
    assert int(counters[b"stalled"]) == 1 and int(counters[b"completed"]) == 1


async def test_stale_token_completion_is_refused(redis: aioredis.Redis, queue: Queue) -> None:
    commands = QueueCommands(queue.name)
    job = await queue.enqueue("x", 1)
    first = (await scripts.run(redis, commands.claim("worker-a", 1, 60_000, -1))).jobs[0]
    # Worker A hangs past its lease: expire it and let B's recovery and claim take the job.
    await redis.zadd(commands.keys.active, {job.id: 0})
    recovery = await scripts.run(redis, commands.recover_stalled("worker-b", 1000, 60_000))
    assert recovery == Recovery(elected=True, recovered=1, dead_lettered=0)
    second = (await scripts.run(redis, commands.claim("worker-b", 1, 60_000, -1))).jobs[0]
    assert second.id == job.id and second.token != first.token
    assert await scripts.run(redis, commands.complete(job.id, first.token, "1")) is Ack.STALE
    assert (
        await scripts.run(redis, commands.fail(job.id, first.token, "e", "", 0, False, attempts=3))
        is Ack.STALE
    )
    assert await scripts.run(redis, commands.complete(job.id, second.token, '"b"')) is Ack.DONE
    assert await scripts.run(redis, commands.complete(job.id, second.token, '"b"')) is Ack.STALE
    done = await queue.get_job(job.id)
    assert done.state is JobState.COMPLETED and done.result == "b"
    assert (await queue.stats()).completed_total == 1


async def test_a_lost_lease_is_not_an_attempt(redis: aioredis.Redis, queue: Queue) -> None:
    """Attempts count what handlers did: a job whose worker was lost on its last attempt runs again
    (alone: see test_isolation.py), with that attempt given back."""
    commands = QueueCommands(queue.name)
    job = await queue.enqueue("x", attempts=1)
    await scripts.run(redis, commands.claim("worker-a", 1, 60_000, -1))
    await redis.zadd(commands.keys.active, {job.id: 0})
    recovery = await scripts.run(redis, commands.recover_stalled("worker-b", 1000, 60_000))
    assert recovery == Recovery(elected=True, recovered=1, dead_lettered=0)
    back = await queue.get_job(job.id)
    assert back.state is JobState.WAITING and back.attempts_made == 0
    # The recoverer is elected once per interval: a second call within it does nothing.
    not_elected = await scripts.run(redis, commands.recover_stalled("worker-c", 1000, 60_000))
    assert not_elected == Recovery(elected=False)


async def test_sigterm_finishes_short_jobs_and_hands_back_long_ones(
    redis_url: str, queue: Queue, queue_name: str
) -> None:
    short = await queue.enqueue("sleep", 0.3)
    long = await queue.enqueue("sleep", 30)
    worker = spawn_worker(
        redis_url, queue_name, JOBQUEUE_GRACE_PERIOD_SECONDS="1.5", JOBQUEUE_LEASE_SECONDS="30"
    )
    try:
        await finished(queue, short.id, JobState.ACTIVE, within=20)
        await finished(queue, long.id, JobState.ACTIVE)
        worker.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(worker.wait, 20)
    finally:
        worker.kill()
    assert exit_code == 0
    assert (await queue.get_job(short.id)).state is JobState.COMPLETED
    handed_back = await queue.get_job(long.id)
    assert handed_back.state is JobState.WAITING and handed_back.attempts_made == 0
    stats = await queue.stats()
    assert (stats.waiting, stats.active, stats.failed_total) == (1, 0, 0)
    assert await queue.redis.hlen(queue.commands.keys.workers) == 0  # deregistered on exit


async def test_long_job_keeps_its_lease(app: App, queue: Queue, start_worker: WorkerFactory) -> None:
    runs = 0

    @app.job()
    async def long(ctx: JobContext, payload: None) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(1.5)
        return "done"

    job = await queue.enqueue("long")
    start_worker(app, lease_seconds=0.5, heartbeat_seconds=0.1, stalled_interval_seconds=0.1)
    start_worker(app, lease_seconds=0.5, heartbeat_seconds=0.1, stalled_interval_seconds=0.1)
    done = await finished(queue, job.id)
    assert runs == 1 and done.attempts_made == 1
    assert int((await queue.redis.hgetall(queue.commands.keys.counters)).get(b"stalled", 0)) == 0


async def test_an_acked_job_is_not_taken_for_lost(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    """The lease keeper can run between the ack landing in Redis and the job's task reading the
    reply: the job has left active, but it finished, so it is neither cancelled nor warned about."""

    @app.job()
    async def quick(ctx: JobContext, payload: None) -> str:
        return "ok"

    worker = start_worker(app, heartbeat_seconds=60, lease_seconds=180)
    reply_held = asyncio.Event()
    send = worker._acks.send

    async def ack_then_hold(calls: Any) -> Any:
        replies = await send(calls)  # the ack is in Redis ...
        await reply_held.wait()  # ... but the job's task has not seen the reply yet
        return replies

    worker._acks.send = ack_then_hold
    job = await queue.enqueue("quick")
    await finished(queue, job.id)
    entry = worker.running[job.id]
    try:
        await worker.extend_leases()
        assert not entry.lease_lost and not entry.task.cancelled()
    finally:
        reply_held.set()
    await entry.task
    assert worker.metrics.jobs.labels(app.queue, "quick", "completed")._value.get() == 1


async def test_heartbeat_reports_pod_and_in_flight(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()

    @app.job()
    async def hold(ctx: JobContext, payload: None) -> None:
        await release.wait()

    for _ in range(2):
        await queue.enqueue("hold")
    worker = start_worker(app, concurrency=5, pod_name="emails-7d9f-abcde")

    async def busy() -> dict[str, object] | None:
        raw = await queue.redis.hget(queue.commands.keys.workers, worker.id)
        beat = json.loads(raw) if raw else None
        return beat if beat and beat["inflight"] == 2 else None

    beat = await wait_for(busy, message="heartbeat shows 2 in flight")
    assert beat["pod"] == "emails-7d9f-abcde" and beat["concurrency"] == 5
    observation = await queue.stats()
    assert [(w.pod, w.inflight) for w in observation.workers] == [("emails-7d9f-abcde", 2)]
    release.set()


async def test_claim_behind_the_blocking_pop_survives_a_flushed_script_cache(
    redis: aioredis.Redis, queue: Queue
) -> None:
    """An idle worker's claim rides behind its BZPOPMIN; a server that lost its scripts (restart,
    SCRIPT FLUSH) gets them again and the claim still returns the job."""
    job = await queue.enqueue("work")
    await redis.script_flush()
    commands = QueueCommands(queue.name)
    call = commands.claim("w1", 1, 30_000, -1)
    claimed = await scripts.run_after_pop(redis, commands.keys.marker, 0.05, call)
    assert [job.id for job in claimed.jobs] == [job.id]


BACKGROUND = {scripts.load(s).sha for s in (scripts.Script.EXTEND_LEASE, scripts.Script.RECOVER_STALLED)}


class CancelSwallowingRedis(aioredis.Redis):
    """A client that, like redis-py at times (redis/redis-py#2028, #2551), finishes a command it was
    cancelled in and returns its reply: the cancellation is lost to the caller. The background
    loops' scripts take a while here, so a stopping worker cancels those loops inside one."""

    async def evalsha(self, sha: str, *args: Any, **kwargs: Any) -> Any:
        if sha in BACKGROUND:
            with contextlib.suppress(asyncio.CancelledError):  # swallowed, as the library does
                await asyncio.sleep(0.3)
        return await super().evalsha(sha, *args, **kwargs)


async def test_worker_stops_when_its_client_swallows_a_cancellation(redis_url: str, app: App) -> None:
    client = CancelSwallowingRedis.from_url(redis_url)
    worker = Worker(
        app,
        client,
        WorkerSettings(
            queue=app.queue, heartbeat_seconds=0.01, stalled_interval_seconds=0.01, metrics_port=0
        ),
    )
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: worker.healthy, message="worker serving")
        await asyncio.sleep(0.05)  # both background loops are inside a script call by now
        worker.stop()
        done, _ = await asyncio.wait([task], timeout=20)
        assert done, "the worker did not stop: a background loop outlived its cancellation"
    finally:
        task.cancel()
        await client.aclose()
