"""Coalesce script calls made concurrently on one event loop into pipelined round trips.

Callers ``await batcher.submit(call)`` as if each call were alone; while one pipeline is in
flight, new calls queue up and go out together in the next one. A web app enqueueing from many
concurrent requests, or a worker acknowledging many finished jobs, pays a fraction of a round trip
per call instead of a whole one. A lost connection is retried with backoff; calls are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from worker_runtime import scripts
from worker_runtime.backoff import Backoff
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.scripts import ScriptCall

log = logging.getLogger("jobqueue.batching")

RECONNECT = Backoff(base=0.1, cap=5.0)


class CallBatcher:
    """One flusher task per batcher, started lazily on the first call."""

    def __init__(self, client: aioredis.Redis, max_batch: int = 1000) -> None:
        self.client = client
        self.max_batch = max_batch
        self._pending: list[tuple[ScriptCall, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, call: ScriptCall) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        self._idle.clear()
        self._ready.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="jobqueue-batcher")
        return await future

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[tuple[ScriptCall, asyncio.Future[Any]]]) -> None:
        failures = 0
        while True:
            try:
                replies = await scripts.run_many(self.client, [c for c, _ in batch], return_exceptions=True)
                break
            except TRANSIENT_ERRORS as exc:
                failures += 1
                delay = RECONNECT.delay(failures)
                log.warning("redis unavailable (%s); resending %d call(s) in %.1fs", exc, len(batch), delay)
                await asyncio.sleep(delay)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller gave up (cancelled)
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def aclose(self) -> None:
        """Send what is pending, then stop the flusher."""
        if self._flusher is not None and not self._flusher.done():
            await self._idle.wait()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
