"""What the tier checks on every topology: a queue's whole life through the public API.

Per queue: three jobs enqueued (one alone, two in bulk) and one by the blocking producer; a real
``Worker`` claims them; ``ok`` completes, ``flaky`` fails its first attempt and completes on the
retry, ``bad`` fails for good and lands in the dead-letter set with its error; the probe (one
pipelined call over every queue) then reads exactly that; the dead job is replayed and dies again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tests.support.wait import wait_for
from worker_runtime import (
    App,
    Backoff,
    JobContext,
    JobSpec,
    Permanent,
    Queue,
    QueueObservation,
    SyncQueue,
    Worker,
    WorkerSettings,
    probe_queues,
)
from worker_runtime.connection import AsyncClient, SyncClient

FAST_RETRY = Backoff(base=0.05, cap=0.1)


def build_app(queue: str) -> App:
    app = App(queue)

    @app.job("ok")
    async def ok(ctx: JobContext, payload: Any) -> Any:
        return {"echo": payload}

    @app.job("flaky", attempts=3)
    async def flaky(ctx: JobContext, payload: Any) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    @app.job("bad", attempts=2)
    async def bad(ctx: JobContext, payload: Any) -> None:
        raise Permanent(f"cannot process {payload}")

    return app


def worker_settings(queue: str) -> WorkerSettings:
    return WorkerSettings(
        queue=queue, concurrency=2, lease_seconds=5.0, heartbeat_seconds=0.5,
        stalled_interval_seconds=1.0, grace_period_seconds=5.0, metrics_port=0,
    )  # fmt: skip


async def exercise(client: AsyncClient, sync_client: SyncClient, names: Sequence[str]) -> None:
    """The scenario over ``names`` at once: one worker per queue, one probe over all of them."""
    apps = [build_app(name) for name in names]
    queues = [Queue(app.queue, client, app=app) for app in apps]
    try:
        for queue in queues:
            await queue.enqueue("ok", {"n": 1})
            await queue.enqueue_many(
                [JobSpec("flaky", {"n": 2}, backoff=FAST_RETRY), JobSpec("bad", {"n": 3}, backoff=FAST_RETRY)]
            )
            SyncQueue(queue.name, sync_client).enqueue("ok", {"n": 4})
        before = await probe_queues(client, names)
        assert all(o.waiting == 4 and o.enqueued_total == 4 for o in before.values()), before
        workers = [Worker(app, client, worker_settings(app.queue)) for app in apps]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:
            await wait_for(lambda: _all_settled(client, names), timeout=60, message="every queue settled")
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        after = await probe_queues(client, names)
        for name in names:
            _check_settled(after[name])
        for queue in queues:
            await _check_dead_letter(queue)
    finally:
        for queue in queues:
            await queue.aclose()


async def _all_settled(client: AsyncClient, names: Sequence[str]) -> bool:
    observed = await probe_queues(client, names)
    return all(o.completed == 3 and o.dead == 1 for o in observed.values())


def _check_settled(observed: QueueObservation) -> None:
    assert (observed.waiting, observed.active, observed.retrying) == (0, 0, 0), observed
    assert (observed.completed, observed.dead) == (3, 1), observed
    assert observed.completed_total == 3 and observed.dead_total == 1, observed
    assert observed.failed_total == 2, observed  # flaky's first attempt, bad's only one


async def _check_dead_letter(queue: Queue) -> None:
    (dead,) = await queue.dead_jobs()
    assert dead.name == "bad" and dead.error is not None and "cannot process" in dead.error, dead
    assert await queue.replay_dead(dead.id)
    assert (await queue.stats()).waiting == 1
    assert await queue.purge_dead() == 0  # replayed: nothing dead is left
