"""The producer: enqueue jobs, look them up, read stats, manage the dead-letter set.

``Queue`` is async (redis.asyncio); ``SyncQueue`` has the same methods, blocking, for WSGI apps and
scripts. Both are thin: the checks and every operation are ``producer.Producer``'s, written once
and driven on either client (``operations``); a test keeps the two public APIs equal. Enqueue is
one round trip, ``enqueue_many`` one pipelined round trip for the whole batch.

Errors: ``EnqueueError`` (and its ``PayloadError``, ``UnknownJobError``) for a job refused before
anything is written; ``ConfigurationError`` at once when Redis refuses the credentials or the TLS
check; ``EnqueueTimeout`` when an enqueue is not confirmed within ``enqueue_timeout`` seconds
(resends included); ``RedisUnavailable`` when another call cannot reach Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from worker_runtime import operations
from worker_runtime.backoff import Backoff
from worker_runtime.batching import Coalescer, Expired
from worker_runtime.commands import NewJob
from worker_runtime.connection import AsyncClient, SyncClient
from worker_runtime.errors import RedisUnavailable
from worker_runtime.flow import (
    DEFAULT_BREAKER_MIN_ATTEMPTS,
    DEFAULT_BREAKER_WINDOW_SECONDS,
    Breaker,
    FlowConfig,
    RateLimit,
)
from worker_runtime.job import EnqueuedJob, Job
from worker_runtime.observation import QueueObservation
from worker_runtime.operations import Operation
from worker_runtime.options import JobSpec
from worker_runtime.producer import DEAD_BATCH, ENQUEUE_BATCH, Producer
from worker_runtime.schedules import ScheduleInfo

# What ``Queue.stats()`` returns: the probe's own shape, so the two can never disagree.
QueueStats = QueueObservation
R = TypeVar("R")


class Queue(Producer[AsyncClient]):
    """Async producer and admin API of one queue: ``Queue(name, connect(url), app=app)``.

    ``app`` (optional) lets enqueue refuse unknown job names and payloads that fail the handler's
    model; ``defaults`` are the retry settings of jobs that set none; ``max_payload_bytes`` bounds a
    payload's JSON. ``enqueue_timeout``: seconds an enqueue may take, resends on a lost connection
    included, before it raises ``EnqueueTimeout`` (10 by default); the other calls resend a round
    trip for as long before they raise ``RedisUnavailable``. Give it a client from ``connect``,
    which leaves the resending to the producer (a client that retries too only makes each attempt
    longer). ``wait_for_replicas=N``: an enqueue is acknowledged only once N replicas have it
    (Redis ``WAIT``, in the same round trip), so a failover cannot lose it; a write fewer replicas
    confirm within ``replica_timeout`` seconds (1, or ``enqueue_timeout`` if shorter) is resent
    (docs/redis.md).
    """

    _coalescer: Coalescer[NewJob] | None = None

    async def _run(self, operation: Operation[R], *, resend: bool = True) -> R:
        within = self.enqueue_timeout if resend else None
        return await operations.run_async(self.redis, operation, within=within)

    async def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's run-time limit, not this call's
        ttl: float | timedelta | None = None,
        group: str | None = None,
    ) -> EnqueuedJob:
        """Add a job and return its id at once. An existing ``job_id`` is not enqueued twice.

        Concurrent calls on one event loop are written together by one bulk script call per round
        trip (see ``batching``); each caller still gets its own result once its job is written.
        """
        spec = JobSpec(name, payload, job_id=job_id, priority=priority, delay=delay, attempts=attempts,
                       backoff=backoff, timeout=timeout, ttl=ttl, group=group)  # fmt: skip
        job = self._new_job(spec)
        if self._coalescer is None:
            self._coalescer = Coalescer(self._send, max_batch=ENQUEUE_BATCH, timeout=self.enqueue_timeout)
        try:
            result: EnqueuedJob = await self._coalescer.submit(job)
        except Expired as exc:
            raise self._timed_out([job], self._coalescer.last_error) from exc
        return result

    async def _send(self, jobs: Sequence[NewJob]) -> list[EnqueuedJob]:
        # The coalescer resends, for as long as each of its callers waits.
        return await self._run(self._write(jobs), resend=False)

    async def aclose(self) -> None:
        """Stop the enqueue coalescer (the Redis client stays the caller's)."""
        if self._coalescer is not None:
            await self._coalescer.aclose()

    async def enqueue_many(self, specs: Iterable[JobSpec]) -> list[EnqueuedJob]:
        """Validate every job first (all or nothing), then add them in one round trip."""
        jobs = self._new_jobs(specs)
        try:
            result: list[EnqueuedJob] = await self._run(self._write(jobs))
        except RedisUnavailable as exc:
            raise self._timed_out(jobs, exc.__cause__) from exc
        return result

    async def get_job(self, job_id: str) -> Job:
        """A snapshot of one job; ``JobNotFound`` if there is none (or retention deleted it)."""
        return await self._run(self._get_job(job_id))

    async def stats(self) -> QueueObservation:
        """Jobs in each state, the oldest ready job's age, the counters and the live workers:
        exactly what the operator's probe sees."""
        return await self._run(self._stats())

    observe = stats  # the probe's word for the same read

    async def flow(self) -> FlowConfig:
        """The queue's flow control: paused, rate limit, running cap (``flow.FlowConfig``)."""
        return await self._run(self._flow())

    async def pause(self) -> FlowConfig:
        """Stop every worker's claims within one poll; running jobs finish, enqueue still works."""
        return await self._run(self._configure_flow(paused=True))

    async def resume(self) -> FlowConfig:
        """Claim again, at once (the held workers are woken)."""
        return await self._run(self._configure_flow(paused=False))

    async def set_rate_limit(self, jobs: int | None, per_seconds: float = 1.0) -> FlowConfig:
        """Start at most ``jobs`` jobs per ``per_seconds`` across all workers (None: no limit)."""
        return await self._run(self._configure_flow(rate_limit=rate_limit(jobs, per_seconds)))

    async def set_group_rate_limit(self, jobs: int | None, per_seconds: float = 1.0) -> FlowConfig:
        """Let every group (``enqueue(..., group=...)``) start at most ``jobs`` jobs per
        ``per_seconds``; a group over it waits without holding up the others (None: no limit)."""
        return await self._run(self._configure_flow(group_rate_limit=rate_limit(jobs, per_seconds)))

    async def set_max_running(self, limit: int | None) -> FlowConfig:
        """Run at most ``limit`` jobs at once across all workers (None: no cap)."""
        return await self._run(self._configure_flow(max_running=limit))

    async def add_schedule(
        self,
        name: str,
        job: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        payload: Any = None,
        tz: str = "UTC",
        missed: str = "skip",
    ) -> bool:
        """Enqueue ``job`` with ``payload`` on every tick of ``cron`` (in ``tz``) or ``every``
        seconds, once per tick whoever fires it (``schedules``); replaces a schedule of that name.
        False when it was stored as given already (its next tick is kept)."""
        schedule = self._schedule(name, job, cron, every, payload, tz, missed)
        return await self._run(self._add_schedule(schedule))

    async def schedules(self) -> list[ScheduleInfo]:
        """The stored schedules with their next tick (ms), by name."""
        return await self._run(self._schedules())

    async def remove_schedule(self, name: str) -> bool:
        """Stop a schedule (its jobs already enqueued stay); False if there was none."""
        return await self._run(self._remove_schedule(name))

    async def set_breaker(
        self,
        failures: int | None,
        cooloff_seconds: float = 30.0,
        *,
        failure_ratio: float | None = None,
        window_seconds: float = DEFAULT_BREAKER_WINDOW_SECONDS,
        min_attempts: int = DEFAULT_BREAKER_MIN_ATTEMPTS,
    ) -> FlowConfig:
        """Circuit breakers per job name: ``failures`` failed attempts in a row, or a share
        ``failure_ratio`` of failed attempts among at least ``min_attempts`` in the last
        ``window_seconds``, stop the claims of that name for ``cooloff_seconds``, then one job
        tries (both None: no breakers). Replaces the breakers' whole configuration."""
        wanted = breaker(failures, cooloff_seconds, failure_ratio, window_seconds, min_attempts)
        return await self._run(self._configure_flow(breaker=wanted))

    async def dead_jobs(self, offset: int = 0, limit: int = 100) -> list[Job]:
        """Up to ``limit`` dead-lettered jobs from ``offset``, oldest first, with their payload,
        last error and attempts (``limit=0``: none)."""
        return await self._run(self._dead_jobs(offset, limit))

    async def cancel(self, job_id: str) -> bool:
        """Delete a job that is waiting (held by its group's limit or not), delayed or retrying;
        False if there is none, or it is running or finished (left as it is)."""
        return await self._run(self._cancel(job_id))

    async def replay_dead(self, job_id: str) -> bool:
        """Put one dead job back to waiting with fresh attempts; False if it is not dead."""
        return await self._run(self._replay_dead(job_id))

    async def replay_all_dead(self, batch: int = DEAD_BATCH) -> int:
        """Replay every job dead when the call starts (``batch`` per script call); the number replayed."""
        return await self._run(self._replay_all_dead(batch))

    async def purge_dead(self, job_ids: Iterable[str] | None = None) -> int:
        """Delete the dead jobs ``job_ids`` (None: every job dead now); the number deleted."""
        return await self._run(self._purge_dead(job_ids))


def rate_limit(jobs: int | None, per_seconds: float) -> RateLimit | None:
    """The limit ``set_rate_limit`` asks for (None: none); ``ValueError`` names a bad value."""
    return None if jobs is None else RateLimit(jobs, per_seconds)


def breaker(
    failures: int | None,
    cooloff_seconds: float,
    failure_ratio: float | None = None,
    window_seconds: float = DEFAULT_BREAKER_WINDOW_SECONDS,
    min_attempts: int = DEFAULT_BREAKER_MIN_ATTEMPTS,
) -> Breaker | None:
    """The breakers ``set_breaker`` asks for (None: none); ``ValueError`` names a bad value."""
    if failures is None and failure_ratio is None:
        return None
    return Breaker(failures, cooloff_seconds, failure_ratio, window_seconds, min_attempts)


class SyncQueue(Producer[SyncClient]):
    """The same producer and admin API, blocking, for WSGI apps and scripts (see ``Queue``).

    Give it a client from ``connect_sync``: its socket timeout bounds a call to a silent server,
    which ``enqueue_timeout`` alone cannot interrupt.
    """

    def _run(self, operation: Operation[R]) -> R:
        return operations.run_sync(self.redis, operation, within=self.enqueue_timeout)

    def enqueue(
        self,
        name: str,
        payload: Any = None,
        *,
        job_id: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        ttl: float | timedelta | None = None,
        group: str | None = None,
    ) -> EnqueuedJob:
        spec = JobSpec(name, payload, job_id=job_id, priority=priority, delay=delay, attempts=attempts,
                       backoff=backoff, timeout=timeout, ttl=ttl, group=group)  # fmt: skip
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Iterable[JobSpec]) -> list[EnqueuedJob]:
        jobs = self._new_jobs(specs)
        try:
            result: list[EnqueuedJob] = self._run(self._write(jobs))
        except RedisUnavailable as exc:
            raise self._timed_out(jobs, exc.__cause__) from exc
        return result

    def get_job(self, job_id: str) -> Job:
        return self._run(self._get_job(job_id))

    def stats(self) -> QueueObservation:
        return self._run(self._stats())

    observe = stats

    def flow(self) -> FlowConfig:
        return self._run(self._flow())

    def pause(self) -> FlowConfig:
        return self._run(self._configure_flow(paused=True))

    def resume(self) -> FlowConfig:
        return self._run(self._configure_flow(paused=False))

    def set_rate_limit(self, jobs: int | None, per_seconds: float = 1.0) -> FlowConfig:
        return self._run(self._configure_flow(rate_limit=rate_limit(jobs, per_seconds)))

    def set_group_rate_limit(self, jobs: int | None, per_seconds: float = 1.0) -> FlowConfig:
        return self._run(self._configure_flow(group_rate_limit=rate_limit(jobs, per_seconds)))

    def set_max_running(self, limit: int | None) -> FlowConfig:
        return self._run(self._configure_flow(max_running=limit))

    def add_schedule(
        self,
        name: str,
        job: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        payload: Any = None,
        tz: str = "UTC",
        missed: str = "skip",
    ) -> bool:
        schedule = self._schedule(name, job, cron, every, payload, tz, missed)
        return self._run(self._add_schedule(schedule))

    def schedules(self) -> list[ScheduleInfo]:
        return self._run(self._schedules())

    def remove_schedule(self, name: str) -> bool:
        return self._run(self._remove_schedule(name))

    def set_breaker(
        self,
        failures: int | None,
        cooloff_seconds: float = 30.0,
        *,
        failure_ratio: float | None = None,
        window_seconds: float = DEFAULT_BREAKER_WINDOW_SECONDS,
        min_attempts: int = DEFAULT_BREAKER_MIN_ATTEMPTS,
    ) -> FlowConfig:
        wanted = breaker(failures, cooloff_seconds, failure_ratio, window_seconds, min_attempts)
        return self._run(self._configure_flow(breaker=wanted))

    def dead_jobs(self, offset: int = 0, limit: int = 100) -> list[Job]:
        return self._run(self._dead_jobs(offset, limit))

    def cancel(self, job_id: str) -> bool:
        return self._run(self._cancel(job_id))

    def replay_dead(self, job_id: str) -> bool:
        return self._run(self._replay_dead(job_id))

    def replay_all_dead(self, batch: int = DEAD_BATCH) -> int:
        return self._run(self._replay_all_dead(batch))

    def purge_dead(self, job_ids: Iterable[str] | None = None) -> int:
        return self._run(self._purge_dead(job_ids))
