"""Bad jobs and bad handlers: each ends dead-lettered with its true reason; the worker carries on.

| case                                          | expectation                                          |
| --------------------------------------------- | ---------------------------------------------------- |
| a result that is not JSON, or too large       | fails once (no retry), the error names the result    |
| an exception whose ``str()`` raises           | recorded at once: its type and traceback             |
| a handler raising SystemExit                  | a failed attempt, the worker serves on               |
| 300 distinct unknown job names                | all dead; the ``job`` label takes one value for them |
| a missing or unparsable payload               | dead, saying so                                      |
| garbage in a job hash, an id with no hash     | dead with the reason, whatever the field; the worker |
| (waiting, or due in a scheduled set)          | carries on and runs the next job                     |
| a script meeting garbage mid-transition       | the job is left in exactly one state                 |
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import App, Job, JobContext, JobNotFound, JobState, Queue, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.states import STATES


@pytest.fixture
def calls(app: App) -> dict[str, int]:
    """An app whose handlers misbehave; ``calls`` counts their runs by job name."""
    counted: dict[str, int] = {}

    def count(ctx: JobContext) -> None:
        counted[ctx.job_name] = counted.get(ctx.job_name, 0) + 1

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    @app.job()
    async def returns_a_set(ctx: JobContext, payload: None) -> Any:
        count(ctx)
        return {1, 2}

    @app.job()
    async def returns_too_much(ctx: JobContext, payload: None) -> str:
        count(ctx)
        return "x" * 5000

    @app.job()
    async def raises_unprintable(ctx: JobContext, payload: None) -> None:
        count(ctx)
        raise Unprintable()

    @app.job()
    async def exits(ctx: JobContext, payload: None) -> None:
        count(ctx)
        raise SystemExit(3)

    @app.job()
    async def ok(ctx: JobContext, payload: Any) -> str:
        count(ctx)
        return "ok"

    return counted


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("returns_a_set", "result is not JSON-serialisable: Object of type set is not JSON serializable"),
        ("returns_too_much", "result is 5002 bytes, over the limit of 4096 bytes"),
    ],
)
async def test_a_bad_result_fails_once_naming_the_result(
    app: App, queue: Queue, calls: dict[str, int], start_worker: WorkerFactory, name: str, error: str
) -> None:
    job = await queue.enqueue(name, attempts=3)
    start_worker(app, max_payload_bytes=4096)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert calls[name] == 1, "a bad result was retried: its side effects ran again"
    assert dead.attempts_made == 1 and dead.error is not None and error in dead.error


async def test_an_exception_whose_str_raises_is_recorded(
    app: App, queue: Queue, calls: dict[str, int], start_worker: WorkerFactory
) -> None:
    job = await queue.enqueue("raises_unprintable", attempts=1)
    start_worker(app, lease_seconds=60)  # a lost job would take a lease to show
    dead = await finished(queue, job.id, JobState.DEAD, within=5)
    assert dead.error is not None and dead.error.startswith("Unprintable")
    assert dead.traceback is not None and "raise Unprintable()" in dead.traceback


async def test_a_handler_raising_systemexit_fails_its_attempt_only(
    app: App, queue: Queue, calls: dict[str, int], start_worker: WorkerFactory
) -> None:
    job = await queue.enqueue("exits", attempts=1)
    start_worker(app)
    dead = await finished(queue, job.id, JobState.DEAD)
    assert dead.error == "SystemExit: 3"
    after = await queue.enqueue("ok")
    await finished(queue, after.id)


async def test_unknown_job_names_share_one_label_value(
    app: App, redis: aioredis.Redis, queue: Queue, calls: dict[str, int], start_worker: WorkerFactory
) -> None:
    blind = Queue(app.queue, redis)  # a producer without the app cannot refuse unknown names
    unknown = [(await blind.enqueue(f"no-such-job-{i}")).id for i in range(300)]
    known = await blind.enqueue("ok")
    worker = start_worker(app, concurrency=20)
    for job_id in unknown[-5:]:
        dead = await finished(queue, job_id, JobState.DEAD)
        assert dead.error is not None and "no handler for job 'no-such-job-" in dead.error
    await finished(queue, known.id)

    async def all_dead() -> bool:
        return (await queue.stats()).dead == 300

    await wait_for(all_dead, message="every unknown job dead")
    text = generate_latest(worker.metrics.registry).decode()
    labels = {
        line.split('job_name="', 1)[1].split('"', 1)[0] for line in text.splitlines() if 'job_name="' in line
    }
    assert labels <= set(app.jobs) | {"(unknown)"}, sorted(labels)[:5]
    assert 'jobqueue_jobs_dead_lettered_total{job_name="(unknown)"' in text
    await blind.aclose()


# --- garbage in Redis -------------------------------------------------------------------------


async def _job_hash(redis: aioredis.Redis, queue: Queue, payload: Any = None) -> str:
    """A waiting job of ``ok``, written by the real enqueue script."""
    blind = Queue(queue.name, redis)
    job_id = (await blind.enqueue("ok", payload)).id
    await blind.aclose()
    return job_id


async def _state_held(redis: aioredis.Redis, c: QueueCommands, job_id: str) -> JobState | None:
    """The job's state, checked against the sets holding it: exactly one, the right one."""
    holders = [s for s in STATES if await redis.zscore(c.keys.of_state(s), job_id) is not None]
    state = await redis.hget(c.keys.job(job_id), "state")
    if state is None:
        assert holders == [], f"{job_id} has no hash but is in {holders}"
        return None
    assert holders == [JobState(state.decode())], f"{job_id} is {state!r} but held by {holders}"
    return JobState(state.decode())


GARBAGE: dict[str, tuple[dict[str, str], list[str], str]] = {
    # case: (fields written over a waiting job, fields deleted, words of the reason)
    "opts not JSON": ({"opts": "{attempts"}, [], "options"),
    "opts missing": ({}, ["opts"], "options"),
    "opts of the wrong shape": ({"opts": '{"attempts":"many","timeout":[]}'}, [], "options"),
    "name missing": ({}, ["name"], "name"),
    "payload missing": ({}, ["payload"], "payload"),
    "payload not JSON": ({"payload": "{'single': 'quotes'}"}, [], "payload"),
    "expires_at garbled": ({"expires_at": "soon"}, [], "expires_at"),
    "attempts_made garbled": ({"attempts_made": "many"}, [], "attempts_made"),
    "ready_at garbled": ({"ready_at": "yesterday"}, [], "ready_at"),
}


@pytest.mark.parametrize("case", GARBAGE, ids=list(GARBAGE))
async def test_garbage_in_a_job_hash_ends_dead_with_the_reason(
    app: App,
    redis: aioredis.Redis,
    queue: Queue,
    calls: dict[str, int],
    start_worker: WorkerFactory,
    case: str,
) -> None:
    written, deleted, reason = GARBAGE[case]
    c = QueueCommands(queue.name)
    job_id = await _job_hash(redis, queue)
    if written:
        await redis.hset(c.keys.job(job_id), mapping=written)
    if deleted:
        await redis.hdel(c.keys.job(job_id), *deleted)
    worker = start_worker(app)
    dead = await finished(queue, job_id, JobState.DEAD)
    assert dead.error is not None and reason in dead.error, dead.error
    assert await _state_held(redis, c, job_id) is JobState.DEAD
    after = await queue.enqueue("ok")
    await finished(queue, after.id)  # the worker carries on
    assert worker.healthy and not worker.stopping


@pytest.mark.parametrize("where", ["waiting", "delayed", "retrying", "active"])
async def test_an_id_without_its_hash_is_dead_lettered_not_fatal(
    app: App,
    redis: aioredis.Redis,
    queue: Queue,
    calls: dict[str, int],
    start_worker: WorkerFactory,
    where: str,
) -> None:
    c = QueueCommands(queue.name)
    ghost = "ghost-" + where
    await redis.zadd(c.keys.of_state(where), {ghost: 0})  # score 0: due, first, or a lease long expired
    worker = start_worker(app)

    async def buried() -> Job | None:
        job = await queue.get_job(ghost)
        return job if job.state is JobState.DEAD else None

    dead = await wait_for(buried, ignore=(JobNotFound,), message=f"{ghost} dead-lettered")
    assert dead.error is not None and "hash" in dead.error, dead.error
    assert await _state_held(redis, c, ghost) is JobState.DEAD
    after = await queue.enqueue("ok")
    await finished(queue, after.id)
    assert worker.healthy and not worker.stopping


async def test_a_garbled_score_does_not_lose_a_promoted_job(
    app: App, redis: aioredis.Redis, queue: Queue, calls: dict[str, int], start_worker: WorkerFactory
) -> None:
    c = QueueCommands(queue.name)
    job = await queue.enqueue("ok", delay=0.05)
    await redis.hset(c.keys.job(job.id), "score", "high")
    start_worker(app)
    done = await finished(queue, job.id)  # a bad score is not the job's fault: it runs
    assert done.result == "ok"


LEASE_SCRIPTS_GARBAGE = {
    "release, attempts_made garbled": ("release", {"attempts_made": "many"}),
    "release, score garbled": ("release", {"score": "high"}),
    "fail, opts garbled": ("fail", {"opts": "{"}),
    "recover, opts garbled": ("recover", {"opts": "{"}),
    "recover, stalls garbled": ("recover", {"stalls": "lots"}),
    "recover, score garbled": ("recover", {"score": "high"}),
}


@pytest.mark.parametrize("case", LEASE_SCRIPTS_GARBAGE, ids=list(LEASE_SCRIPTS_GARBAGE))
async def test_a_script_meeting_garbage_leaves_the_job_in_one_state(
    redis: aioredis.Redis, queue: Queue, case: str
) -> None:
    script, garbage = LEASE_SCRIPTS_GARBAGE[case]
    c = QueueCommands(queue.name)
    job_id = await _job_hash(redis, queue)
    claimed = (await scripts.run(redis, c.claim("w1", 1, 60_000, -1))).jobs[0]
    await redis.hset(c.keys.job(job_id), mapping=garbage)
    if script == "release":
        await scripts.run(redis, c.release(job_id, claimed.token))
    elif script == "fail":
        await scripts.run(redis, c.fail(job_id, claimed.token, "E: x", "", 0, False, attempts=3))
    else:
        await redis.zadd(c.keys.active, {job_id: 0})
        await scripts.run(redis, c.recover_stalled("w2", 1000, 60_000))
    assert await _state_held(redis, c, job_id) in {JobState.WAITING, JobState.RETRYING, JobState.DEAD}
