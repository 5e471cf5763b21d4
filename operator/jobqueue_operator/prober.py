"""Batching probe: every JobQueue that polls within a short window shares one round trip per Redis URL.

Each JobQueue's timer calls ``Prober.probe(url, queue)``. The first call for a URL opens a window
(``window`` seconds); every call for the same URL within it joins the batch, and one pipelined
``worker_runtime.probe.probe_queues`` answers them all. Clients are cached per URL. A failed round
trip is retried with exponential backoff; if every attempt fails, each caller gets the error (the
policy then sees ``observation=None`` and its fallback applies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from worker_runtime import connection, probe
from worker_runtime.observation import QueueObservation

Connect = Callable[[str], aioredis.Redis]


class ProbeError(Exception):
    """The queue could not be probed after every retry."""


def _connect(url: str) -> aioredis.Redis:
    # Short timeouts: a probe that hangs delays every JobQueue sharing the URL. The prober retries
    # with its own backoff, so the client does not retry underneath it.
    return connection.connect(url, retries=0, socket_connect_timeout=2.0, socket_timeout=5.0)


@dataclass
class _Batch:
    waiters: dict[str, list[asyncio.Future[QueueObservation]]] = field(default_factory=dict)


class Prober:
    """Batches probes per Redis URL; one instance per operator (it owns the clients)."""

    def __init__(
        self,
        *,
        window: float = 0.02,
        attempts: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 1.0,
        timeout: float = 10.0,
        connect: Connect = _connect,
    ) -> None:
        self.window = window
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.round_trips = 0
        self._connect = connect
        self._clients: dict[str, aioredis.Redis] = {}
        self._pending: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def client(self, url: str) -> aioredis.Redis:
        """The cached client of a URL."""
        if url not in self._clients:
            self._clients[url] = self._connect(url)
        return self._clients[url]

    async def probe(self, url: str, queue: str) -> QueueObservation:
        """One queue's observation, from the batch of its URL; ``ProbeError`` when Redis fails."""
        future: asyncio.Future[QueueObservation] = asyncio.get_running_loop().create_future()
        batch = self._pending.get(url)
        if batch is None:
            batch = self._pending[url] = _Batch()
            task = asyncio.create_task(self._flush_later(url, batch), name=f"jobqueue-probe {url}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        batch.waiters.setdefault(queue, []).append(future)
        try:
            async with asyncio.timeout(self.window + self.attempts * (self.timeout + self.max_backoff)):
                return await future
        except TimeoutError:
            raise ProbeError("the probe timed out") from None

    async def probe_many(self, url: str, queues: Sequence[str]) -> dict[str, QueueObservation]:
        """All queues of one URL in one pipelined round trip, retried with backoff."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                async with asyncio.timeout(self.timeout):
                    self.round_trips += 1
                    return await probe.probe_queues(self.client(url), queues)
            except (RedisError, OSError, TimeoutError) as exc:
                if attempt == self.attempts:
                    raise ProbeError(f"Redis probe failed after {attempt} attempts: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    async def _flush_later(self, url: str, batch: _Batch) -> None:
        found: dict[str, QueueObservation] = {}
        error: BaseException | None = ProbeError("the probe was cancelled")
        try:
            await asyncio.sleep(self.window)
            if self._pending.get(url) is batch:
                del self._pending[url]
            found = await self.probe_many(url, list(batch.waiters))
            error = None
        except Exception as exc:
            error = exc
        finally:
            # Every waiter gets an answer, even when this task is cancelled at shutdown.
            if self._pending.get(url) is batch:
                del self._pending[url]
            for name, futures in batch.waiters.items():
                _settle(futures, result=found.get(name), error=error)

    async def close(self) -> None:
        """Cancel pending batches and close the clients."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()


def _settle(
    futures: list[asyncio.Future[QueueObservation]],
    *,
    result: QueueObservation | None = None,
    error: BaseException | None = None,
) -> None:
    for future in futures:
        if future.done():
            continue
        if result is not None and error is None:
            future.set_result(result)
        else:
            future.set_exception(ProbeError(str(error)) if error else ProbeError("no reply for the queue"))
