"""Factories for runtime tests: queues and in-process workers that are closed after the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from worker_runtime import App, Queue, Worker, WorkerSettings

WorkerFactory = Callable[..., Worker]


@pytest.fixture
def app(queue_name: str) -> App:
    return App(queue_name)


@pytest.fixture
async def queue(redis: aioredis.Redis, app: App) -> AsyncIterator[Queue]:
    q = Queue(app.queue, redis, app=app)
    yield q
    await q.aclose()


@pytest.fixture
async def start_worker(redis: aioredis.Redis) -> AsyncIterator[WorkerFactory]:
    """Start in-process workers (fast leases by default); all are stopped and awaited at teardown."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(app: App, **settings: Any) -> Worker:
        options: dict[str, Any] = {
            "queue": app.queue,
            "concurrency": 4,
            "lease_seconds": 2.0,
            "heartbeat_seconds": 0.2,
            "stalled_interval_seconds": 0.3,
            "grace_period_seconds": 5.0,
            "metrics_port": 0,
        }
        worker = Worker(app, redis, WorkerSettings(**(options | settings)))
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, _ in running:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in running)), 60)
