"""The probe of the operator: all queues of one Redis URL in one pipelined round trip.

The control loop groups the due JobQueues by Redis URL and calls ``Prober.probe_many(url, queues)``
once per URL and tick; ``worker_runtime.probe.probe_queues`` answers them all. Clients are cached
per URL. A failed round trip is retried with exponential backoff; if every attempt fails, the
caller gets ``ProbeError`` for every queue of that URL (the policy then sees ``observation=None``
and its fallback applies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from worker_runtime import connection, probe
from worker_runtime.observation import QueueObservation

Connect = Callable[[str], aioredis.Redis]


class ProbeError(Exception):
    """The queues could not be probed after every retry."""


def _connect(url: str) -> aioredis.Redis:
    # Short timeouts: a probe that hangs delays every JobQueue sharing the URL. The prober retries
    # with its own backoff, so the client does not retry underneath it.
    return connection.connect(url, retries=0, socket_connect_timeout=2.0, socket_timeout=5.0)


class Prober:
    """Probes per Redis URL; one instance per operator (it owns the clients)."""

    def __init__(
        self,
        *,
        attempts: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 1.0,
        timeout: float = 10.0,
        connect: Connect = _connect,
    ) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.round_trips = 0
        self._connect = connect
        self._clients: dict[str, aioredis.Redis] = {}

    def client(self, url: str) -> aioredis.Redis:
        """The cached client of a URL."""
        if url not in self._clients:
            self._clients[url] = self._connect(url)
        return self._clients[url]

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

    async def close(self) -> None:
        """Close the clients."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
