"""Producer: enqueue returns an id at once, lookups, stats, idempotency keys, bulk, bad input refused.

| case                         | expectation                                               |
| ---------------------------- | --------------------------------------------------------- |
| enqueue                      | id returned, state waiting, counters and ready age set    |
| enqueue with delay           | state delayed, not ready (age 0)                          |
| same job_id twice            | second call created=False, one job                        |
| enqueue_many                 | one EVALSHA per 1,000 jobs, in one round trip             |
| bad input (table)            | EnqueueError subclass with a clear message, nothing written |
"""

from __future__ import annotations

import math
from typing import Any

import pydantic
import pytest
import redis.asyncio as aioredis

from worker_runtime import (
    App,
    EnqueueError,
    JobContext,
    JobNotFound,
    JobSpec,
    JobState,
    PayloadError,
    Queue,
    SyncQueue,
    UnknownJobError,
    connect_sync,
)


class Email(pydantic.BaseModel):
    to: str
    subject: str


@pytest.fixture
def typed_app(app: App) -> App:
    @app.job()
    async def send_email(ctx: JobContext, payload: Email) -> None:
        return None

    return app


async def test_enqueue_returns_id_and_job_is_waiting(queue: Queue, typed_app: App) -> None:
    job = await queue.enqueue("send_email", {"to": "a@example.com", "subject": "hi"}, priority=5)
    assert job.created and job.state is JobState.WAITING and len(job.id) == 32
    snapshot = await queue.get_job(job.id)
    assert snapshot.name == "send_email"
    assert snapshot.payload == {"to": "a@example.com", "subject": "hi"}
    assert snapshot.priority == 5 and snapshot.attempts == 3 and snapshot.attempts_made == 0
    assert snapshot.created_at and snapshot.ready_at == snapshot.created_at
    stats = await queue.stats()
    assert (stats.waiting, stats.delayed, stats.active, stats.enqueued_total) == (1, 0, 0, 1)


async def test_pydantic_model_instance_is_accepted(queue: Queue, typed_app: App) -> None:
    job = await queue.enqueue("send_email", Email(to="b@example.com", subject="x"))
    assert (await queue.get_job(job.id)).payload == {"to": "b@example.com", "subject": "x"}


async def test_delayed_job_is_not_ready(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    job = await queue.enqueue("later", None, delay=60)
    assert job.state is JobState.DELAYED
    stats = await queue.stats()
    assert (stats.waiting, stats.delayed, stats.oldest_ready_age_s) == (0, 1, 0.0)
    assert (await queue.get_job(job.id)).ready_at == pytest.approx(
        (await queue.get_job(job.id)).created_at + 60
    )
    await queue.aclose()


async def test_job_id_is_an_idempotency_key(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    first = await queue.enqueue("charge", {"order": 1}, job_id="order-1")
    second = await queue.enqueue("charge", {"order": 2}, job_id="order-1")
    assert first.created and not second.created and second.id == "order-1"
    assert (await queue.get_job("order-1")).payload == {"order": 1}
    assert (await queue.stats()).waiting == 1
    await queue.aclose()


async def test_enqueue_many_is_one_round_trip(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    before = await _evalsha_calls(redis)
    jobs = await queue.enqueue_many([JobSpec("n", {"i": i}, priority=i % 3) for i in range(2500)])
    assert await _evalsha_calls(redis) - before == 3  # 1,000 jobs per script call
    assert len({j.id for j in jobs}) == 2500 and all(j.created for j in jobs)
    assert (await queue.stats()).waiting == 2500
    again = await queue.enqueue_many([JobSpec("n", job_id=jobs[0].id), JobSpec("n", job_id="fresh")])
    assert [j.created for j in again] == [False, True]


async def test_enqueue_many_reports_each_jobs_state(redis: aioredis.Redis, queue_name: str) -> None:
    """Existing ids keep their state (delayed stays delayed); new jobs are waiting or delayed."""
    queue = Queue(queue_name, redis)
    await queue.enqueue("n", job_id="old-delayed", delay=60)
    specs = [
        JobSpec("n", job_id="new-now"),
        JobSpec("n", job_id="old-delayed"),
        JobSpec("n", job_id="new-later", delay=30),
        JobSpec("n", job_id="new-now"),  # the same id twice in one batch: written once
        JobSpec("n", job_id="urgent", priority=-5),
    ]
    jobs = await queue.enqueue_many(specs)
    assert [(j.id, j.state, j.created) for j in jobs] == [
        ("new-now", JobState.WAITING, True),
        ("old-delayed", JobState.DELAYED, False),
        ("new-later", JobState.DELAYED, True),
        ("new-now", JobState.WAITING, False),
        ("urgent", JobState.WAITING, True),
    ]
    assert (await queue.get_job("urgent")).priority == -5
    assert (await queue.get_job("new-later")).state is JobState.DELAYED
    stats = await queue.stats()
    assert (stats.waiting, stats.delayed, stats.enqueued_total) == (2, 2, 4)
    await queue.aclose()


async def test_options_shared_by_a_batch_are_still_checked_by_type(
    redis: aioredis.Redis, queue_name: str
) -> None:
    """True equals 1, but a bool is no priority: a batch that resolved 1 first must still refuse it."""
    queue = Queue(queue_name, redis)
    with pytest.raises(EnqueueError, match="priority"):
        await queue.enqueue_many([JobSpec("n", priority=1), JobSpec("n", priority=True)])  # type: ignore[arg-type]
    with pytest.raises(EnqueueError, match="delay"):
        await queue.enqueue_many([JobSpec("n"), JobSpec("n", delay=[1])])  # type: ignore[arg-type]
    for option in ("delay", "timeout", "ttl"):
        with pytest.raises(EnqueueError, match=option):
            await queue.enqueue_many([JobSpec("n", **{option: 1}), JobSpec("n", **{option: True})])
    assert (await queue.stats()).waiting == 0  # all or nothing
    await queue.aclose()


async def test_one_bulk_script_call_over_many_zadd_chunks(redis: aioredis.Redis, queue_name: str) -> None:
    """The bulk script adds ready jobs with one ZADD per 1,000; a longer call takes several."""
    from worker_runtime import scripts
    from worker_runtime.commands import NewJob, QueueCommands
    from worker_runtime.options import JobOptions

    commands = QueueCommands(queue_name)
    options = JobOptions(attempts=3, timeout=300, backoff=(1, 60))
    jobs = [NewJob(f"j{i}", "n", "null", options) for i in range(2500)]
    enqueued = await scripts.run(redis, commands.enqueue_many(jobs))
    assert all(j.created for j in enqueued)  # nothing existed
    queue = Queue(queue_name, redis)
    stats = await queue.stats()
    assert (stats.waiting, stats.enqueued_total) == (2500, 2500)
    first = await redis.zrange(commands.keys.waiting, 0, 2)
    assert first == [b"j0", b"j1", b"j2"]  # FIFO order survives the chunking
    assert await redis.zcard(commands.keys.ready_since) == 2500


async def _evalsha_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_sync_queue_enqueue_and_lookup(redis_url: str, queue_name: str) -> None:
    client = connect_sync(redis_url)
    queue = SyncQueue(queue_name, client)
    job = queue.enqueue("report", {"month": "2026-11"})
    assert queue.get_job(job.id).payload == {"month": "2026-11"}
    assert [j.created for j in queue.enqueue_many([JobSpec("report"), JobSpec("report")])] == [True, True]
    assert queue.stats().waiting == 3
    with pytest.raises(JobNotFound):
        queue.get_job("missing")
    client.close()


_ok = {"to": "a", "subject": "b"}
BAD_INPUT: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("send_email", {"payload": {"to": object()}}, PayloadError, "does not validate"),
    ("send_email", {"payload": {"to": "x"}}, PayloadError, "subject"),
    ("nope", {"payload": {}}, UnknownJobError, "no handler for job 'nope'"),
    ("send_email", {"payload": _ok, "priority": 1.5}, EnqueueError, "priority"),
    ("send_email", {"payload": _ok, "priority": 10**7}, EnqueueError, "priority must be an int"),
    ("send_email", {"payload": _ok, "delay": -1}, EnqueueError, "delay must be"),
    ("send_email", {"payload": _ok, "delay": math.inf}, EnqueueError, "delay must be"),
    ("send_email", {"payload": _ok, "attempts": 0}, EnqueueError, "attempts"),
    ("send_email", {"payload": _ok, "timeout": -5}, EnqueueError, "timeout"),
    ("send_email", {"payload": _ok, "ttl": -1}, EnqueueError, "ttl must be"),
    ("send_email", {"payload": _ok, "ttl": 10, "delay": 10}, EnqueueError, "shorter than ttl"),
    ("send_email", {"payload": _ok, "delay": True}, EnqueueError, "delay must be a number"),
    ("send_email", {"payload": _ok, "delay": "5"}, EnqueueError, "delay must be a number"),
    ("send_email", {"payload": _ok, "delay": 366 * 86_400}, EnqueueError, "delay must be at most"),
    ("send_email", {"payload": _ok, "timeout": True}, EnqueueError, "timeout must be a number"),
    ("send_email", {"payload": _ok, "timeout": "5"}, EnqueueError, "timeout must be a number"),
    ("send_email", {"payload": _ok, "timeout": math.nan}, EnqueueError, "timeout must be"),
    ("send_email", {"payload": _ok, "timeout": 8 * 86_400}, EnqueueError, "timeout must be at most"),
    ("send_email", {"payload": _ok, "ttl": "60"}, EnqueueError, "ttl must be a number"),
    ("send_email", {"payload": _ok, "ttl": 366 * 86_400}, EnqueueError, "ttl must be at most"),
    ("send_email", {"payload": _ok, "attempts": True}, EnqueueError, "attempts"),
    ("send_email", {"payload": _ok, "job_id": "has space"}, EnqueueError, "job id"),
    ("send_email", {"payload": _ok, "job_id": "{tag}"}, EnqueueError, "job id"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "message"), BAD_INPUT)
async def test_bad_input_is_refused_and_nothing_written(
    queue: Queue, typed_app: App, name: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs = dict(kwargs)
    payload = kwargs.pop("payload")
    with pytest.raises(error, match=message):
        await queue.enqueue(name, payload, **kwargs)
    assert (await queue.stats()).enqueued_total == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": {1, 2}}, "not JSON-serialisable"),
        ({"x": math.nan}, "not JSON-serialisable"),
        (b"raw", "not JSON"),
    ],
)
async def test_non_json_payload_is_refused(
    redis: aioredis.Redis, queue_name: str, payload: Any, message: str
) -> None:
    queue = Queue(queue_name, redis)
    with pytest.raises(PayloadError, match=message):
        await queue.enqueue("job", payload)


async def test_oversize_payload_is_refused(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis, max_payload_bytes=1024)
    await queue.enqueue("job", "x" * 1000)
    with pytest.raises(PayloadError, match="over the limit of 1024 bytes"):
        await queue.enqueue("job", "x" * 1100)
    default = Queue(queue_name, redis)
    with pytest.raises(PayloadError, match="over the limit of 524288 bytes"):
        await default.enqueue("job", "x" * (512 * 1024 + 1))
    await queue.aclose()


async def test_bulk_is_all_or_nothing(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    with pytest.raises(EnqueueError):
        await queue.enqueue_many([JobSpec("ok", 1), JobSpec("bad", priority=-(10**8))])
    assert (await queue.stats()).enqueued_total == 0


def test_app_and_queue_names_must_match(redis_url: str) -> None:
    with pytest.raises(ValueError, match="serves queue"):
        SyncQueue("other", connect_sync(redis_url), app=App("mine"))
    with pytest.raises(ValueError, match="forbidden characters"):
        App("bad{name}")


async def test_resolved_options_follow_a_replaced_handler(redis: aioredis.Redis, queue_name: str) -> None:
    """The producer keeps each resolved option set, but not past a change of the job's handler."""
    app = App(queue_name)

    @app.job(attempts=2)
    async def report(ctx: JobContext, payload: None) -> None: ...

    queue = Queue(queue_name, redis, app=app)
    assert (await queue.get_job((await queue.enqueue("report")).id)).attempts == 2
    del app.jobs["report"]
    app.job(name="report", attempts=5)(report)
    assert (await queue.get_job((await queue.enqueue("report")).id)).attempts == 5
    await queue.aclose()
