"""Per-job TTL: a job not started within ``ttl`` seconds of its enqueue is dropped as ``expired``.

| case                                    | expectation                                                 |
| --------------------------------------- | ----------------------------------------------------------- |
| enqueue, no worker until the TTL passed | expired, handler never runs; counted in stats and /metrics  |
| enqueue, a worker in time               | runs as usual; the TTL is recorded as ``expires_at``        |
| enqueue_many, TTL and no TTL mixed      | each option set sent once; only the TTL jobs expire          |
| delayed + TTL                           | the TTL counts from enqueue, not from the due time          |
| delay >= TTL, bad TTLs                  | refused at enqueue, nothing written                          |
| retry after the TTL passed              | the job started in time, so its retry still runs            |
| SyncQueue, CLI ``--ttl``                | the same option                                              |
| retention                               | the newest ``keep_expired`` expired jobs are kept            |
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import (
    App,
    Backoff,
    EnqueueError,
    JobContext,
    JobSpec,
    JobState,
    Queue,
    SyncQueue,
    cli,
    connect_sync,
    scripts,
)


async def _server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _until_past(redis: aioredis.Redis, at_s: float | None) -> None:
    """Let the server's clock pass a job's ``expires_at`` (the claim reads that clock)."""
    assert at_s is not None
    await wait_for(lambda: _past(redis, at_s), timeout=5, message=f"server clock past {at_s}")


async def _past(redis: aioredis.Redis, at_s: float) -> bool:
    return await _server_ms(redis) > at_s * 1000


@pytest.fixture
def counting_app(app: App) -> dict[str, int]:
    runs: dict[str, int] = {}

    @app.job()
    async def work(ctx: JobContext, payload: Any) -> str:
        runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
        return "ran"

    return runs


async def test_job_not_started_within_its_ttl_expires(
    app: App, queue: Queue, counting_app: dict[str, int], start_worker: WorkerFactory
) -> None:
    late = await queue.enqueue("work", ttl=0.05)
    snapshot = await queue.get_job(late.id)
    assert snapshot.expires_at == pytest.approx(snapshot.created_at + 0.05)  # type: ignore[operator]
    await _until_past(queue.redis, snapshot.expires_at)
    worker = start_worker(app)
    in_time = await queue.enqueue("work", ttl=60)
    expired = await finished(queue, late.id, JobState.EXPIRED)
    await finished(queue, in_time.id)
    assert late.id not in counting_app and counting_app[in_time.id] == 1
    assert expired.finished_at is not None and expired.started_at is None
    stats = await queue.stats()
    assert (stats.expired, stats.expired_total, stats.completed_total, stats.waiting) == (1, 1, 1, 0)
    text = generate_latest(worker.metrics.registry).decode()
    assert f'jobqueue_jobs_expired_total{{job_name="work",queue="{app.queue}"}} 1.0' in text


async def test_enqueue_many_sends_each_option_set_once_and_expires_only_ttl_jobs(
    app: App, queue: Queue, counting_app: dict[str, int], start_worker: WorkerFactory
) -> None:
    specs = [JobSpec("work", i, ttl=0.05 if i % 2 else None) for i in range(10)]
    jobs = queue._new_jobs(specs)
    call = queue.commands.enqueue_many(jobs)
    assert call.args[2] == 2 and len(call.args) == 3 + 2 + 4 * len(jobs)  # two option sets, once each
    enqueued = await queue.enqueue_many(specs)
    await _until_past(queue.redis, (await queue.get_job(enqueued[1].id)).expires_at)
    start_worker(app)
    for i, job in enumerate(enqueued):
        await finished(queue, job.id, JobState.EXPIRED if i % 2 else JobState.COMPLETED)
    assert sorted(counting_app) == sorted(j.id for j in enqueued[::2])
    assert (await queue.stats()).expired_total == 5


async def test_ttl_counts_from_enqueue_not_from_the_delay(
    app: App, queue: Queue, counting_app: dict[str, int], start_worker: WorkerFactory
) -> None:
    """Delayed 50 ms with a TTL of 100 ms: due at 50 ms, but not started by 100 ms, it expires."""
    job = await queue.enqueue("work", delay=0.05, ttl=0.1)
    assert job.state is JobState.DELAYED
    snapshot = await queue.get_job(job.id)
    assert snapshot.ready_at == pytest.approx(snapshot.created_at + 0.05)  # type: ignore[operator]
    assert snapshot.expires_at == pytest.approx(snapshot.created_at + 0.1)  # type: ignore[operator]
    await _until_past(queue.redis, snapshot.expires_at)
    start_worker(app)
    await finished(queue, job.id, JobState.EXPIRED)
    assert job.id not in counting_app
    # With a worker there while it is within its TTL, a delayed job runs as usual.
    runs = await queue.enqueue("work", delay=0.05, ttl=30)
    await finished(queue, runs.id)


async def test_a_started_job_is_retried_after_its_ttl(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    """The TTL bounds the time to the first start only: a retry due after it still runs."""

    @app.job()
    async def flaky(ctx: JobContext, payload: None) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    start_worker(app)
    job = await queue.enqueue("flaky", ttl=0.2, backoff=Backoff(0.5, 0.5))
    done = await finished(queue, job.id)
    assert done.result == 2 and done.started_at > done.expires_at  # type: ignore[operator]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl must be at least 1 ms"),
        ({"ttl": -1}, "ttl must be a finite number"),
        ({"ttl": math.inf}, "ttl must be a finite number"),
        ({"ttl": "soon"}, "ttl must be a number of seconds"),
        ({"ttl": 1, "delay": 1}, "delay .* must be shorter than ttl"),
        ({"ttl": 1, "delay": 5}, "delay .* must be shorter than ttl"),
    ],
)
async def test_bad_ttl_is_refused(
    queue: Queue, counting_app: dict[str, int], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(EnqueueError, match=message):
        await queue.enqueue("work", **options)
    with pytest.raises(EnqueueError, match=message):
        await queue.enqueue_many([JobSpec("work"), JobSpec("work", **options)])
    assert (await queue.stats()).enqueued_total == 0


def test_sync_queue_and_cli_take_a_ttl(
    redis_url: str, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = connect_sync(redis_url)
    queue = SyncQueue(queue_name, client)
    one = queue.get_job(queue.enqueue("work", ttl=30).id)
    assert one.expires_at == pytest.approx(one.created_at + 30)  # type: ignore[operator]
    many = queue.enqueue_many([JobSpec("work", ttl=30)])
    assert queue.get_job(many[0].id).expires_at is not None
    cli.main(["enqueue", queue_name, "work", '{"n": 1}', "--ttl", "12.5", "--redis-url", redis_url])
    from_cli = queue.get_job(capsys.readouterr().out.strip())
    assert from_cli.payload == {"n": 1}
    assert from_cli.expires_at == pytest.approx(from_cli.created_at + 12.5)  # type: ignore[operator]
    with pytest.raises(SystemExit) as refused:
        cli.main(["enqueue", queue_name, "work", "--ttl", "0", "--redis-url", redis_url])
    assert refused.value.code == 2 and "ttl must be at least 1 ms" in capsys.readouterr().err
    client.close()


async def test_only_the_newest_expired_jobs_are_kept(
    redis: aioredis.Redis, queue: Queue, counting_app: dict[str, int]
) -> None:
    jobs = [await queue.enqueue("work", ttl=0.02) for _ in range(3)]
    await _until_past(redis, (await queue.get_job(jobs[-1].id)).expires_at)
    claimed = await scripts.run(redis, queue.commands.claim("w1", 3, 60_000, keep_expired=2))
    assert claimed.jobs == [] and claimed.expired == ["work"] * 3
    stats = await queue.stats()
    assert (stats.expired, stats.expired_total) == (2, 3)
    kept = [await redis.exists(queue.commands.keys.job(j.id)) for j in jobs]
    assert sum(kept) == 2
