"""The probe of the operator: all queues of one Redis URL in one pipelined round trip.

The control loop groups the due JobQueues by Redis URL and calls ``Prober.probe_many(url, queues)``
once per URL and tick; ``worker_runtime.probe.probe_queues`` answers them all. Clients are cached
per URL. Failures are told apart by what they concern:

* the server (connection refused or lost, timeouts, loading, authentication): the round trip is
  retried with exponential backoff; if every attempt fails, ``ProbeError`` for the whole URL (the
  policy then sees ``observation=None`` and its fallback applies);
* one queue (a name the runtime refuses, a key of the wrong type, a reply that does not parse):
  reported for that queue alone in ``ProbeResult.errors``, never for its neighbours. A name is
  checked before anything is sent; a batch that fails for a queue's sake is probed again one
  queue at a time, and the queues that failed are probed alone on later passes ("suspects") until
  they succeed, so the others keep their one round trip. When every queue fails alone in the same
  words (say, an ACL that forbids the probe), that is the server's problem: ``ProbeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from jobqueue_operator import tunables
from worker_runtime import connection, errors, keys, probe
from worker_runtime.endpoint import TlsOptions
from worker_runtime.observation import QueueObservation

Connect = Callable[[str, TlsOptions | None], connection.AsyncClient]

# Failures of the server or the network (a Sentinel or Cluster failover in progress too): retried,
# then the whole URL counts as unprobed.
SERVER_ERRORS: tuple[type[BaseException], ...] = (*connection.TRANSIENT_ERRORS, TimeoutError)
# Failures one queue's keys or reply can cause (anything else the probe raises is a bug, and raised).
QUEUE_ERRORS: tuple[type[BaseException], ...] = (RedisError, ValueError, TypeError, IndexError, KeyError)


class ProbeError(Exception):
    """The queues of a URL could not be probed after every retry."""


@dataclass
class ProbeResult:
    """Observations by queue name, and for the queues that failed alone, why."""

    observations: dict[str, QueueObservation] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class _QueueFailure(Exception):
    """A batch failed for a reason that may concern one queue only."""


class Prober:
    """Probes per Redis URL; one instance per operator (it owns the clients)."""

    def __init__(
        self, settings: tunables.ProbeTunables | None = None, *, connect: Connect | None = None
    ) -> None:
        self.settings = settings if settings is not None else tunables.ProbeTunables()
        self.round_trips = 0
        self._connect = connect if connect is not None else self._default_connect
        self._clients: dict[tuple[str, TlsOptions | None], connection.AsyncClient] = {}
        self._suspects: dict[str, set[str]] = {}

    def _default_connect(self, url: str, tls: TlsOptions | None) -> connection.AsyncClient:
        # Short timeouts: a probe that hangs delays every JobQueue sharing the URL. The prober retries
        # with its own backoff, so the client does not retry underneath it.
        return connection.connect(
            url,
            tls=tls,
            retries=0,
            socket_connect_timeout=self.settings.connect_timeout_seconds,
            socket_timeout=self.settings.socket_timeout_seconds,
        )

    def client(self, url: str, tls: TlsOptions | None = None) -> connection.AsyncClient:
        """The cached client of a URL and TLS options (``ProbeError`` for a URL it cannot use)."""
        if (url, tls) not in self._clients:
            try:
                self._clients[url, tls] = self._connect(url, tls)
            except (ValueError, errors.ConfigurationError) as exc:
                raise ProbeError(f"the Redis URL is not usable: {exc}") from None
        return self._clients[url, tls]

    async def probe_many(self, url: str, queues: Sequence[str], tls: TlsOptions | None = None) -> ProbeResult:
        """All queues of one URL: one round trip for those not suspected, one each for the others
        (on a Cluster, a round trip is one pipeline per node, in parallel)."""
        result = ProbeResult()
        names: list[str] = []
        for name in dict.fromkeys(queues):
            try:
                keys.validate_queue_name(name)
            except ValueError as exc:
                result.errors[name] = str(exc)
            else:
                names.append(name)
        suspects = self._suspects.setdefault(url, set())
        batch = [name for name in names if name not in suspects]
        alone = [name for name in names if name in suspects]
        if batch:
            try:
                result.observations.update(await self._round_trip(url, tls, batch))
            except _QueueFailure:
                alone += batch
        if alone:
            await self._one_by_one(url, tls, alone, result)
        suspects.difference_update(result.observations)
        return result

    async def _one_by_one(
        self, url: str, tls: TlsOptions | None, names: list[str], result: ProbeResult
    ) -> None:
        async def single(name: str) -> tuple[str, QueueObservation | str]:
            try:
                return name, (await self._round_trip(url, tls, [name]))[name]
            except _QueueFailure as failure:
                return name, str(failure.__cause__ or failure)

        outcomes = await asyncio.gather(*(single(name) for name in names))
        failed = {name: outcome for name, outcome in outcomes if isinstance(outcome, str)}
        if len(failed) == len(names) > 1 and len(set(failed.values())) == 1:
            raise ProbeError(f"Redis refused the probe of every queue: {next(iter(failed.values()))}")
        for name, outcome in outcomes:
            if isinstance(outcome, str):
                result.errors[name] = f"the probe of queue {name!r} failed: {outcome}"
                self._suspects.setdefault(url, set()).add(name)
            else:
                result.observations[name] = outcome

    async def _round_trip(
        self, url: str, tls: TlsOptions | None, queues: Sequence[str]
    ) -> dict[str, QueueObservation]:
        """One pipelined probe, retried with backoff on server errors."""
        settings = self.settings
        delay = settings.backoff_seconds
        client = self.client(url, tls)
        for attempt in range(1, settings.attempts + 1):
            try:
                async with asyncio.timeout(settings.timeout_seconds):
                    self.round_trips += 1
                    return await probe.probe_queues(client, queues)
            except SERVER_ERRORS as exc:
                if attempt == settings.attempts:
                    raise ProbeError(f"Redis probe failed after {attempt} attempts: {exc}") from exc
            except QUEUE_ERRORS as exc:
                raise _QueueFailure(str(exc)) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.max_backoff_seconds)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the clients."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
