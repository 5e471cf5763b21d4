"""Stopping a worker process: a second signal stops at once; no handler holds the stop up.

| case                                                  | expectation                                   |
| ----------------------------------------------------- | --------------------------------------------- |
| SIGTERM, then SIGTERM again during the grace period   | stops at once; the jobs are handed back       |
| SIGINT twice (Ctrl-C in a terminal)                   | the same                                      |
| an async handler that swallows its cancellation       | the process still ends soon after its grace;  |
|                                                       | the job is not handed back while it may run   |
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.processes import spawn_worker, stop
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import JobState, Queue


@pytest.fixture
async def queue(redis: aioredis.Redis, queue_name: str) -> AsyncIterator[Queue]:
    q = Queue(queue_name, redis)
    yield q
    await q.aclose()


async def _draining(queue: Queue) -> bool:
    return any(w.draining for w in (await queue.stats()).workers)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_second_signal_stops_at_once(
    redis_url: str, queue: Queue, queue_name: str, sig: signal.Signals
) -> None:
    jobs = [await queue.enqueue("work", 60), await queue.enqueue("work_sync", 60)]
    worker = spawn_worker(redis_url, queue_name, JOBQUEUE_GRACE_PERIOD_SECONDS="60")
    try:
        for job in jobs:
            await finished(queue, job.id, JobState.ACTIVE, within=20)
        worker.send_signal(sig)
        await wait_for(lambda: _draining(queue), message="draining after the first signal")
        second = time.monotonic()
        worker.send_signal(sig)
        code = await asyncio.to_thread(worker.wait, 10)  # the grace period has 60 s to go
        print(f"stopped {time.monotonic() - second:.1f}s after the second signal")
    except subprocess.TimeoutExpired:
        pytest.fail("the second signal was ignored")
    finally:
        stop(worker, timeout=1)
    assert code == 0
    for job in jobs:
        back = await queue.get_job(job.id)
        assert back.state is JobState.WAITING and back.attempts_made == 0


async def test_a_handler_that_ignores_cancellation_cannot_hold_the_stop(
    redis_url: str, queue: Queue, queue_name: str
) -> None:
    job = await queue.enqueue("stubborn", 300)
    worker = spawn_worker(redis_url, queue_name, JOBQUEUE_GRACE_PERIOD_SECONDS="1")
    try:
        await finished(queue, job.id, JobState.ACTIVE, within=20)
        worker.terminate()
        code = await asyncio.to_thread(worker.wait, 15)
    except subprocess.TimeoutExpired:
        pytest.fail("a handler that swallows its cancellation kept the worker alive")
    finally:
        stop(worker, timeout=1)
    assert code == 0
    # It was still running when the process ended, so it was not handed back: its lease runs out
    # (the process, and the handler with it, is gone by then) and it is recovered.
    assert (await queue.get_job(job.id)).state in {JobState.ACTIVE, JobState.WAITING}
