"""Coalesce calls made concurrently on one event loop into shared round trips.

Callers ``await coalescer.submit(item)`` as if each call were alone; while one round trip is in
flight, new items queue up and go out together in the next one. A web app enqueueing from many
concurrent requests, or a worker acknowledging many finished jobs, pays a fraction of a round trip
per call instead of a whole one. A lost connection is retried with backoff; items are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis

from worker_runtime import scripts
from worker_runtime.backoff import Backoff
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.scripts import ScriptCall

log = logging.getLogger("jobqueue.batching")

RECONNECT = Backoff(base=0.1, cap=5.0)
# A round trip that takes longer than this is abandoned (redis-py drops its connection) and resent:
# a wedged connection must not hold every caller's result forever.
SEND_TIMEOUT_SECONDS = 10.0
RETRYABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, TimeoutError)

Item = TypeVar("Item")
# send(items) returns one result per item, in order; an Exception in a slot fails only that item.
Sender = Callable[[Sequence[Item]], Awaitable[Sequence[Any]]]


class Coalescer(Generic[Item]):
    """One flusher task per coalescer, started lazily on the first call."""

    def __init__(self, send: Sender[Item], max_batch: int = 1000) -> None:
        self.send = send
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Any]]] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._idle.clear()
        self._ready.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="jobqueue-coalescer")
        return await future

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Any]]]) -> None:
        failures = 0
        while True:
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    replies = await self.send([item for item, _ in batch])
                break
            except RETRYABLE as exc:
                failures += 1
                delay = RECONNECT.delay(failures)
                log.warning("redis unavailable (%s); resending %d call(s) in %.1fs", exc, len(batch), delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug or a server error: fail these callers, keep serving
                replies = [exc] * len(batch)
                break
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller gave up (cancelled)
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def aclose(self) -> None:
        """Send what is pending, then stop the flusher."""
        try:
            if self._flusher is not None and not self._flusher.done():
                await self._idle.wait()
        finally:
            if self._flusher is not None:
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher


def script_batcher(client: aioredis.Redis, max_batch: int = 1000) -> Coalescer[ScriptCall]:
    """A coalescer of script calls: each batch is one pipeline."""

    async def send(calls: Sequence[ScriptCall]) -> list[Any]:
        return await scripts.run_many(client, calls, return_exceptions=True)

    return Coalescer(send, max_batch)
