"""Options declared on the handler apply to every job whose producer did not set them.

| producer                               | handler declares          | the job runs with                   |
| -------------------------------------- | ------------------------- | ----------------------------------- |
| without the app (``jobqueue enqueue``) | ``timeout=1, attempts=2`` | timeout 1 s, 2 attempts             |
| without the app, ``timeout=5`` given   | ``timeout=1``             | timeout 5 s: the producer's choice  |
| without the app, nothing declared      | nothing                   | the worker's queue defaults         |
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import App, Backoff, JobContext, JobState, Queue, cli


@pytest.fixture
async def blind(redis: aioredis.Redis, app: App) -> AsyncIterator[Queue]:
    """A producer that knows nothing of the handlers, as ``jobqueue enqueue`` is."""
    q = Queue(app.queue, redis)
    yield q
    await q.aclose()


@pytest.fixture
def runs(app: App) -> list[int]:
    attempts: list[int] = []

    @app.job(timeout=0.2, attempts=2, backoff=Backoff(0.01, 0.01))
    async def declared(ctx: JobContext, payload: float) -> str:
        attempts.append(ctx.attempt)
        await asyncio.sleep(payload)
        return "in time"

    @app.job()
    async def plain(ctx: JobContext, payload: float) -> str:
        attempts.append(ctx.attempt)
        await asyncio.sleep(payload)
        return "in time"

    return attempts


async def test_the_handlers_timeout_and_attempts_apply_to_a_blind_producers_job(
    app: App, blind: Queue, queue: Queue, runs: list[int], start_worker: WorkerFactory
) -> None:
    job = await blind.enqueue("declared", 30)
    start_worker(app)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert dead.error == "TimeoutError: job timed out after 0.2s"
    assert runs == [1, 2] and dead.attempts_made == 2


async def test_the_producers_own_option_wins_over_the_handlers(
    app: App, blind: Queue, queue: Queue, runs: list[int], start_worker: WorkerFactory
) -> None:
    job = await blind.enqueue("declared", 0.5, timeout=5)
    start_worker(app)
    assert (await finished(queue, job.id)).result == "in time"


async def test_the_workers_queue_defaults_apply_when_no_one_set_them(
    app: App, blind: Queue, queue: Queue, runs: list[int], start_worker: WorkerFactory
) -> None:
    """The JobQueue's `jobs` section reaches the workers as JOBQUEUE_DEFAULT_*: a job whose
    producer and handler are silent runs with them."""
    job = await blind.enqueue("plain", 30)
    start_worker(app, default_timeout_seconds=0.2, default_attempts=1)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert dead.error == "TimeoutError: job timed out after 0.2s" and runs == [1]


async def test_the_cli_enqueues_without_setting_options(
    app: App, redis_url: str, queue: Queue, runs: list[int], start_worker: WorkerFactory
) -> None:
    await asyncio.to_thread(cli.main, ["enqueue", app.queue, "declared", "30", "--redis-url", redis_url])
    start_worker(app)

    async def one_dead() -> bool:
        return (await queue.stats()).dead == 1

    await wait_for(one_dead, message="the CLI's job dead after the handler's two attempts")
    assert runs == [1, 2]
