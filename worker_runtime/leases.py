"""Keeping a worker's leases, and recovering the jobs of workers that were lost.

- The lease keeper extends the leases of every running job with the worker's heartbeat (pod,
  in-flight, concurrency, draining), in one script call every ``min(lease / 3, heartbeat)``. It is
  also the loop that finds Redis again after a loss: it retries at least every interval, and its
  first success is what lets claims resume (``Link.leases_extended``), so on reconnect a worker
  secures its own jobs before anything else. A lease found lost (recovered by another worker)
  cancels its job here: the job runs elsewhere now.
- The stalled recovery gives back the jobs whose lease expired (one worker elected per interval),
  but only once this worker has been connected for a whole heartbeat window: after an outage every
  lease has expired, and every live worker needs that long to reconnect and re-extend its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from worker_runtime import scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.connection import RECONNECT, TRANSIENT_ERRORS, AsyncClient, cancel_requested
from worker_runtime.job import ClaimedJob
from worker_runtime.link import Link
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.settings import WorkerSettings

log = logging.getLogger("jobqueue.worker")
RETRYABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, TimeoutError, RedisError)
# Seconds the lease keeper may be late before the worker calls itself not alive (/livez).
LIVENESS_SLACK_SECONDS = 10.0


@dataclass
class RunningJob:
    job: ClaimedJob
    task: asyncio.Task[None]
    lease_lost: bool = False
    handler_done: bool = False  # the outcome is being acknowledged; the job may have left active


def heartbeat_window(settings: WorkerSettings) -> float:
    """Seconds without a heartbeat after which a worker is presumed lost: a live one reports every
    ``min(lease / 3, heartbeat)``, so this is at least three of its reports."""
    return max(settings.lease_seconds, 5 * settings.heartbeat_seconds)


def call_timeout(settings: WorkerSettings) -> float:
    """A background round trip slower than this is abandoned and retried (a half-open connection
    must not hold the leases up): a third of the lease, within [1, 10] seconds."""
    return min(10.0, max(1.0, settings.lease_seconds / 3))


@dataclass(frozen=True)
class Seat:
    """What a background loop needs of its worker: the client, the queue's script calls, the
    worker's id and settings, and its link (to report every round trip)."""

    redis: AsyncClient
    commands: QueueCommands
    worker_id: str
    settings: WorkerSettings
    link: Link


class LeaseKeeper:
    def __init__(
        self,
        seat: Seat,
        running: dict[str, RunningJob],
        heartbeat: Callable[[], dict[str, Any]],
        isolating: Callable[[], bool],
    ) -> None:
        self.seat, self.link, self.settings = seat, seat.link, seat.settings
        self.running = running
        self.heartbeat = heartbeat
        self.isolating = isolating
        self.interval = min(seat.settings.lease_seconds / 3, seat.settings.heartbeat_seconds)
        self._lease_ms = round(seat.settings.lease_seconds * 1000)
        self._last_round = time.monotonic()

    def alive(self) -> bool:
        """Whether this loop came round on time: an event loop blocked by a handler (sync code in
        an ``async def``) stops it, and its leases with it."""
        late = time.monotonic() - self._last_round
        return late < self.interval + call_timeout(self.settings) + LIVENESS_SLACK_SECONDS

    async def extend(self) -> None:
        """Extend every running job's lease and publish the heartbeat, in one script call."""
        running = list(self.running.values())
        call = self.seat.commands.extend_leases(
            self.seat.worker_id,
            self.heartbeat(),
            [(r.job.id, r.job.token) for r in running],
            self._lease_ms,
            isolating=self.isolating(),
        )
        async with asyncio.timeout(call_timeout(self.settings)):
            held = await scripts.run(self.seat.redis, call)
        for entry, kept in zip(running, held, strict=True):
            # A job whose ack already landed is no longer active: its lease is not lost, it is done.
            if not kept and not entry.task.done() and not entry.handler_done:
                log.warning("lease of job %s was lost; cancelling it here", entry.job.id)
                entry.lease_lost = True
                entry.task.cancel()

    async def run(self) -> None:
        failures = 0
        while not cancel_requested():
            self._last_round = time.monotonic()
            try:
                await self.extend()
            except RETRYABLE as exc:
                self.link.failed(exc, "lease extension")
                failures += 1
            else:
                self.link.leases_extended()
                failures = 0
            # While Redis is away, try again sooner than the interval, never later: this is the
            # loop that finds it again, and other workers wait a heartbeat window for it.
            delay = min(RECONNECT.delay(failures), self.interval) if failures else self.interval
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when another loop loses the link (to reconnect first)."""
        if self.link.lost.is_set():  # lost already: this is the backoff between attempts
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.link.lost.wait()


class StalledRecovery:
    def __init__(self, seat: Seat, metrics: WorkerMetrics) -> None:
        self.seat, self.link, self.settings = seat, seat.link, seat.settings
        self.metrics = metrics
        self.window = heartbeat_window(seat.settings)

    async def run(self) -> None:
        interval = self.settings.stalled_interval_seconds
        await asyncio.sleep(random.uniform(0, interval))  # spread workers that started together
        while not cancel_requested():
            if self.link.connected_for() >= self.window:
                await self.recover_once(interval)
            await asyncio.sleep(interval)

    async def recover_once(self, interval: float) -> None:
        call = self.seat.commands.recover_stalled(
            self.seat.worker_id,
            round(interval * 1000),
            round(self.window * 1000),
            stalls_alone_limit=self.settings.max_stalls_alone,
        )
        try:
            async with asyncio.timeout(call_timeout(self.settings)):
                recovery = await scripts.run(self.seat.redis, call)
        except RETRYABLE as exc:
            self.link.failed(exc, "stalled-job check")
            return
        self.link.answered()
        if recovery.recovered or recovery.dead_lettered:
            self.metrics.stalled_recovered.labels(self.seat.commands.keys.name).inc(recovery.recovered)
            log.warning(
                "recovered %d job(s) from expired leases (each runs alone now); %d dead-lettered, "
                "their worker lost too often while they ran alone",
                recovery.recovered,
                recovery.dead_lettered,
            )
