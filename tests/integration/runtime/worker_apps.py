"""An app for worker subprocesses in tests; the queue name comes from ``TEST_QUEUE``.

Handlers that must be counted write a receipt per run that reached its end (``runs_key``: job id
-> runs) with a client of their own, the way a real side effect lands elsewhere; ``def`` handlers
also note the process they run in (``pids_key``: job id -> pid) when they start.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio as aioredis

from worker_runtime import App, JobContext, RateLimited, connect, connect_sync, keys

app = App(os.environ.get("TEST_QUEUE", "test"))
_URL = os.environ.get("JOBQUEUE_REDIS_URL", "redis://localhost:6379/0")
_async_client: aioredis.Redis | None = None
_sync_client: redis.Redis | None = None


def runs_key(queue: str) -> str:
    return f"test:{{{queue}}}:runs"


def pids_key(queue: str) -> str:
    return f"test:{{{queue}}}:pids"


async def _receipt(job_id: str) -> None:
    """Count a run that reached its end, riding out a Redis outage (a lost receipt reads as a lost job)."""
    global _async_client
    if _async_client is None:
        _async_client = connect(_URL, retries=0)
    for _ in range(600):
        try:
            await _async_client.hincrby(runs_key(app.queue), job_id, 1)
            return
        except (redis.RedisError, OSError):
            await asyncio.sleep(0.1)
    raise RuntimeError(f"could not record the run of job {job_id}")


def _sync() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = connect_sync(_URL)
    return _sync_client


@app.job()
async def sleep(ctx: JobContext, payload: float) -> str:
    await asyncio.sleep(payload)
    return f"slept {payload}s on attempt {ctx.attempt}"


@app.job()
async def work(ctx: JobContext, payload: float) -> None:
    """Sleep ``payload`` seconds, then write the receipt."""
    await asyncio.sleep(payload)
    await _receipt(ctx.job_id)


@app.job()
def work_sync(ctx: JobContext, payload: float) -> int:
    """The same in a plain ``def`` handler; returns the pid it ran in."""
    _sync().hset(pids_key(app.queue), ctx.job_id, os.getpid())
    time.sleep(payload)
    _sync().hincrby(runs_key(app.queue), ctx.job_id, 1)
    return os.getpid()


@app.job()
def limited_sync(ctx: JobContext, payload: float) -> int:
    """A ``def`` handler whose downstream answers "429, retry after ``payload`` s" on its first run
    and holds the queue as long; returns the attempt it ran on after that."""
    if _sync().hincrby(runs_key(app.queue), ctx.job_id, 1) == 1:
        raise RateLimited(payload, hold_queue=True)
    return ctx.attempt


@app.job()
def hang(ctx: JobContext, payload: None) -> None:
    """A ``def`` handler stuck for good (a call with no timeout on a dead peer)."""
    _sync().hset(pids_key(app.queue), ctx.job_id, os.getpid())
    time.sleep(3600)


@app.job()
async def kill_worker(ctx: JobContext, payload: None) -> None:
    """Stands for a segfault or an OOM kill in native code: the whole process dies at once."""
    os._exit(1)


@app.job(timeout=1, attempts=2)
async def declared(ctx: JobContext, payload: float) -> str:
    """Declares its timeout and attempts on the handler; the producer may know nothing of them."""
    await asyncio.sleep(payload)
    return "in time"


@app.job()
async def stubborn(ctx: JobContext, payload: float) -> None:
    """Swallows its cancellation and carries on: a handler that will not stop when asked."""
    deadline = time.monotonic() + payload
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue


def starts_key(queue: str) -> str:
    return f"test:{{{queue}}}:starts"


def running_key(queue: str) -> str:
    return f"test:{{{queue}}}:running"


# One step on the server: count the handler in, and note its start (server ms) and how many ran then.
_CHECK_IN = """
local t = redis.call('TIME')
local n = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000)) .. ':' .. n)
return n
"""


@app.job()
async def tracked(ctx: JobContext, payload: float) -> None:
    """Sleep ``payload`` seconds between a check-in (start time, handlers running across every
    worker) and a check-out: what flow control promises is read from these records."""
    global _async_client
    if _async_client is None:
        _async_client = connect(_URL, retries=0)
    await _async_client.eval(_CHECK_IN, 2, running_key(app.queue), starts_key(app.queue))  # type: ignore[misc]
    try:
        await asyncio.sleep(payload)
    finally:
        await _async_client.decr(running_key(app.queue))


def outcomes_key(queue: str) -> str:
    return f"test:{{{queue}}}:outcomes"


def downstream_key(queue: str) -> str:
    return f"test:{{{queue}}}:downstream"


@app.job(attempts=1)
async def flaky(ctx: JobContext, payload: bool) -> None:
    """Fails when ``payload`` is true, unless the test set the downstream "up" (then it succeeds)
    or "down" (then it fails). Notes each run as ``<job id>:<its breaker's state at the start>:<F|S>``."""
    global _async_client
    if _async_client is None:
        _async_client = connect(_URL, retries=0)
    pipe = _async_client.pipeline(transaction=False)
    pipe.get(downstream_key(app.queue))
    pipe.hget(keys.QueueKeys.for_queue(app.queue).breakers, ctx.job_name)
    downstream, breaker = await pipe.execute()
    failing = downstream == b"down" or (downstream != b"up" and payload)
    state = breaker.decode().partition(":")[0] if breaker else "closed"
    await _async_client.rpush(outcomes_key(app.queue), f"{ctx.job_id}:{state}:{'F' if failing else 'S'}")  # type: ignore[misc]
    if failing:
        raise RuntimeError("503 from the downstream")
