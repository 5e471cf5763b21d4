"""Coalesce calls made concurrently on one event loop into shared round trips.

Callers ``await coalescer.submit(item)`` as if each call were alone; while one round trip is in
flight, new items queue up and go out together in the next one. A web app enqueueing from many
concurrent requests, or a worker acknowledging many finished jobs, pays a fraction of a round trip
per call instead of a whole one.

Each caller gets its own outcome:

- a lost connection is resent with backoff, for as long as the caller waits: up to the
  coalescer's ``timeout`` (then ``Expired``), or until the caller gives up (it is cancelled); either
  way the call is dropped from the next resend (what was sent may still land);
- a configuration problem (wrong password, failed TLS check) is never resent: every caller of the
  batch gets a ``ConfigurationError`` at once;
- any other error of a whole batch (one item the client cannot even encode, say) is not blamed on
  the batch: its items are sent again one by one, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from worker_runtime import scripts
from worker_runtime.connection import (
    RECONNECT,
    TRANSIENT_ERRORS,
    AsyncClient,
    cancel_requested,
    configuration_problem,
)
from worker_runtime.errors import ConfigurationError, RedisUnavailable
from worker_runtime.scripts import ScriptCall

log = logging.getLogger("jobqueue.batching")

# A round trip that takes longer than this is abandoned (redis-py drops its connection) and resent:
# a wedged connection must not hold every caller's result forever.
SEND_TIMEOUT_SECONDS = 10.0
RETRYABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, TimeoutError, RedisUnavailable)


class Expired(TimeoutError):
    """A call that got no result within the coalescer's ``timeout``."""


Item = TypeVar("Item")
# send(items) returns one result per item, in order; an Exception in a slot fails only that item.
Sender = Callable[[Sequence[Item]], Awaitable[Sequence[Any]]]


class Coalescer(Generic[Item]):
    """One flusher task per coalescer, started lazily on the first call.

    With a ``timeout`` (seconds), a call gets ``Expired`` when it has no result that long after it
    was made. The calls' deadlines come in the order of the calls, so one timer for the earliest
    serves them all (a timer per call costs more than the rest of a coalesced call).
    """

    def __init__(self, send: Sender[Item], max_batch: int = 1000, timeout: float | None = None) -> None:
        self.send = send
        self.max_batch = max_batch
        self.timeout = timeout
        self._pending: list[tuple[Item, asyncio.Future[Any]]] = []
        self._deadlines: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None
        # The last error that made a batch be resent, to tell a caller who gave up what was wrong.
        self.last_error: BaseException | None = None

    async def submit(self, item: Item) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, future))
        if self.timeout is not None:
            self._deadlines.append((loop.time() + self.timeout, future))
            if self._sweep is None:
                self._sweep = loop.call_at(self._deadlines[0][0], self._expire)
        self._idle.clear()
        self._ready.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="jobqueue-coalescer")
        return await future

    def _expire(self) -> None:
        """Fail the calls whose deadline passed; set the timer for the next deadline."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= loop.time()):
            _, future = deadlines.popleft()
            if not future.done():
                future.set_exception(Expired(f"no result within {self.timeout:g}s"))
        if deadlines:
            self._sweep = loop.call_at(deadlines[0][0], self._expire)

    def _forget_settled(self) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()

    async def _flush_forever(self) -> None:
        while not cancel_requested():
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Any]]]) -> None:
        failures = 0
        while True:
            batch = [(item, future) for item, future in batch if not future.done()]  # gave up: dropped
            if failures and len(batch) < self.max_batch:  # calls made meanwhile go out with the resend
                room = self.max_batch - len(batch)
                batch, self._pending = batch + self._pending[:room], self._pending[room:]
            if not batch:
                return
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    replies: Sequence[Any] = await self.send([item for item, _ in batch])
                self.last_error = None
                break
            except Exception as exc:
                problem = exc if isinstance(exc, ConfigurationError) else configuration_problem(exc)
                if problem is not None:
                    replies = [_caused(ConfigurationError(str(problem)), exc) for _ in batch]
                    break
                if not isinstance(exc, RETRYABLE):  # a bug, a server error, an item that cannot be sent
                    if len(batch) > 1:
                        for one in batch:  # whose fault it is: each caller gets its own outcome
                            await self._send([one])
                        return
                    replies = [exc]
                    break
                self.last_error = exc
                failures += 1
                delay = RECONNECT.delay(failures)
                log.warning("redis unavailable (%s); resending %d call(s) in %.1fs", exc, len(batch), delay)
                # Woken early when every caller of the batch gave up, so later calls do not wait.
                await asyncio.wait([future for _, future in batch], timeout=delay)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the caller gave up (cancelled)
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        self._forget_settled()

    async def aclose(self) -> None:
        """Send what is pending, then stop the flusher."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        try:
            if self._flusher is not None and not self._flusher.done():
                await self._idle.wait()
        finally:
            if self._flusher is not None:
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher


def _caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


def script_batcher(client: AsyncClient, max_batch: int = 1000) -> Coalescer[ScriptCall[Any]]:
    """A coalescer of script calls: each batch is one pipeline; each caller gets its call's parsed
    result (a call carries its parser), or its own error."""

    async def send(calls: Sequence[ScriptCall[Any]]) -> list[Any]:
        return await scripts.run_settled(client, calls)

    return Coalescer(send, max_batch)
