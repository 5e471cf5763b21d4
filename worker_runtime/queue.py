"""The producer: enqueue jobs, look them up, read stats, manage the dead-letter set.

``Queue`` is async (redis.asyncio); ``SyncQueue`` has the same methods for WSGI apps and scripts.
Both validate in ``_Producer`` and send the calls built by ``QueueCommands``; enqueue is one round
trip, ``enqueue_many`` one pipelined round trip for the whole batch.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import redis.asyncio as aioredis

from worker_runtime import keys as keyspace
from worker_runtime import scripts
from worker_runtime.app import App, JobDefinition, encode_payload
from worker_runtime.backoff import Backoff
from worker_runtime.batching import Coalescer
from worker_runtime.commands import JobOptions, NewJob, QueueCommands, parse_probe
from worker_runtime.errors import EnqueueError, JobNotFound
from worker_runtime.job import EnqueuedJob, Job, JobState, QueueStats
from worker_runtime.observation import QueueObservation
from worker_runtime.settings import RetrySettings

ENQUEUE_BATCH = 1000
# Job ids double as idempotency keys (order ids, webhook ids...); they become part of a key name.
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "._:-")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of an ``enqueue_many`` batch; fields as ``enqueue``'s arguments."""

    name: str
    payload: Any = None
    job_id: str | None = None
    priority: int | None = None
    delay: float | timedelta | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None


def _seconds(value: float | timedelta | None, what: str) -> float:
    if value is None:
        return 0.0
    try:
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    except (TypeError, ValueError):
        seconds = math.nan  # not a number of seconds at all
    if not math.isfinite(seconds) or seconds < 0:
        raise EnqueueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _first(*values: Any) -> Any:
    """The first value that is not None (0 is a value, so ``or`` will not do)."""
    return next(v for v in values if v is not None)


class _Producer:
    """Validation shared by both producers; nothing here does I/O."""

    def __init__(
        self, name: str, *, app: App | None, defaults: RetrySettings | None, max_payload_bytes: int
    ) -> None:
        if app is not None and app.queue != name:
            raise ValueError(f"app serves queue {app.queue!r}, not {name!r}")
        self.name = name
        self.app = app
        self.defaults = defaults or RetrySettings()
        self.max_payload_bytes = max_payload_bytes
        self.commands = QueueCommands(name)
        self._default_backoff = Backoff(self.defaults.backoff_base_seconds, self.defaults.backoff_cap_seconds)

    def _new_job(self, spec: JobSpec) -> NewJob:
        return self._new_jobs([spec])[0]

    def _new_jobs(self, specs: Iterable[JobSpec]) -> list[NewJob]:
        """Check jobs and turn them into what the scripts write; raises ``EnqueueError``.

        Jobs of a batch usually share their options, so each distinct set is resolved once.
        """
        specs = list(specs)
        random_ids = os.urandom(16 * len(specs)).hex()  # one system call for the whole batch
        resolved: dict[tuple[Any, ...], tuple[JobDefinition | None, JobOptions]] = {}
        jobs = []
        for i, spec in enumerate(specs):
            # The types are part of the key: 1, 1.0 and True are equal, but only 1 is a valid priority.
            key = (spec.name, spec.priority, type(spec.priority), spec.attempts, type(spec.attempts),
                   spec.delay, spec.timeout, spec.backoff)  # fmt: skip
            try:
                found = resolved.get(key)
            except TypeError:  # an unhashable option: let the checks say what is wrong with it
                found = self._options(spec)
            if found is None:
                found = resolved[key] = self._options(spec)
            definition, options = found
            if definition is not None:
                definition.parse_payload(spec.payload)  # refuse a bad payload now, not in the worker
            if spec.job_id is None:
                job_id = random_ids[32 * i : 32 * i + 32]
            elif not spec.job_id or len(spec.job_id) > 200 or not _ID_CHARS.issuperset(spec.job_id):
                raise EnqueueError(
                    f"job id must be 1..200 characters of [A-Za-z0-9._:-], got {spec.job_id!r}"
                )
            else:
                job_id = spec.job_id
            payload = encode_payload(spec.payload, self.max_payload_bytes)
            jobs.append(NewJob(job_id, spec.name, payload, options))
        return jobs

    def _options(self, spec: JobSpec) -> tuple[JobDefinition | None, JobOptions]:
        """The job's handler (when the producer knows the app) and its checked options."""
        definition = self.app.definition(spec.name) if self.app else None
        if definition is None and (not spec.name or len(spec.name) > 200):
            raise EnqueueError(f"job name must be 1..200 characters, got {spec.name!r}")
        priority = 0 if spec.priority is None else spec.priority
        if type(priority) is not int or not keyspace.PRIORITY_MIN <= priority <= keyspace.PRIORITY_MAX:
            bounds = f"[{keyspace.PRIORITY_MIN}, {keyspace.PRIORITY_MAX}]"
            raise EnqueueError(f"priority must be an int in {bounds}, got {priority!r}")
        attempts = _first(spec.attempts, definition and definition.attempts, self.defaults.default_attempts)
        if type(attempts) is not int or not 1 <= attempts <= 1000:
            raise EnqueueError(f"attempts must be an int in [1, 1000], got {attempts!r}")
        timeout = _first(
            spec.timeout, definition and definition.timeout, self.defaults.default_timeout_seconds
        )
        if _seconds(timeout, "timeout") <= 0:
            raise EnqueueError(f"timeout must be > 0 seconds, got {timeout!r}")
        backoff = spec.backoff or self._default_backoff
        options = JobOptions(
            priority=priority,
            delay_ms=round(_seconds(spec.delay, "delay") * 1000) if spec.delay else 0,
            attempts=attempts,
            backoff_base_ms=round(backoff.base * 1000),
            backoff_cap_ms=round(backoff.cap * 1000),
            timeout_ms=round(float(timeout) * 1000),
        )
        return definition, options

    @staticmethod
    def _enqueued(job: NewJob, reply: list[Any]) -> EnqueuedJob:
        return EnqueuedJob(job.id, JobState(reply[1].decode()), created=bool(int(reply[0])))

    @staticmethod
    def _batches(jobs: list[NewJob]) -> list[list[NewJob]]:
        # One script call per 1,000 jobs keeps each call short, so Redis serves others in between.
        return [jobs[i : i + ENQUEUE_BATCH] for i in range(0, len(jobs), ENQUEUE_BATCH)]

    @staticmethod
    def _enqueued_many(jobs: list[NewJob], reply: list[Any]) -> list[EnqueuedJob]:
        """The bulk script names only the ids that existed already (index, state); the rest are new."""
        existing = {int(reply[i]): JobState(reply[i + 1].decode()) for i in range(0, len(reply), 2)}
        return [
            EnqueuedJob(job.id, existing[i], created=False)
            if i in existing
            else EnqueuedJob(job.id, JobState.DELAYED if job.options.delay_ms else JobState.WAITING)
            for i, job in enumerate(jobs)
        ]

    def _job(self, job_id: str, raw: dict[bytes, bytes]) -> Job:
        if not raw:
            raise JobNotFound(f"no job {job_id!r} in queue {self.name!r}")
        return Job.from_hash(self.name, job_id, raw)

    @staticmethod
    def _stats(o: QueueObservation) -> QueueStats:
        return QueueStats(
            waiting=o.waiting,
            delayed=o.delayed,
            active=o.active,
            completed=o.completed,
            failed=o.retry,
            dead=o.dead,
            oldest_ready_age_s=o.oldest_ready_age_s,
            enqueued_total=o.enqueued_total,
            completed_total=o.completed_total,
            failed_total=o.failed_total,
            dead_total=o.dead_total,
        )


class Queue(_Producer):
    """Async producer and admin API of one queue."""

    def __init__(
        self,
        name: str,
        redis_client: aioredis.Redis,
        *,
        app: App | None = None,
        defaults: RetrySettings | None = None,
        max_payload_bytes: int = keyspace.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(name, app=app, defaults=defaults, max_payload_bytes=max_payload_bytes)
        self.redis = redis_client
        self._coalescer: Coalescer[NewJob] | None = None

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
    ) -> EnqueuedJob:
        """Add a job and return its id at once. An existing ``job_id`` is not enqueued twice.

        Concurrent calls on one event loop are written together by one bulk script call per round
        trip (see ``batching``); each caller still gets its own result once its job is written.
        """
        job = self._new_job(JobSpec(name, payload, job_id, priority, delay, attempts, backoff, timeout))
        if self._coalescer is None:
            self._coalescer = Coalescer(self._write, max_batch=ENQUEUE_BATCH)
        result: EnqueuedJob = await self._coalescer.submit(job)
        return result

    async def _write(self, jobs: Sequence[NewJob]) -> list[EnqueuedJob]:
        if len(jobs) == 1:
            return [self._enqueued(jobs[0], await scripts.run(self.redis, self.commands.enqueue(jobs[0])))]
        reply = await scripts.run(self.redis, self.commands.enqueue_many(jobs))
        return self._enqueued_many(list(jobs), reply)

    async def aclose(self) -> None:
        """Stop the enqueue coalescer (the Redis client stays the caller's)."""
        if self._coalescer is not None:
            await self._coalescer.aclose()

    async def enqueue_many(self, specs: Iterable[JobSpec]) -> list[EnqueuedJob]:
        """Validate every job first (all or nothing), then add them in one round trip."""
        jobs = self._new_jobs(specs)
        batches = self._batches(jobs)
        replies = await scripts.run_many(self.redis, [self.commands.enqueue_many(b) for b in batches])
        return [
            e
            for batch, reply in zip(batches, replies, strict=True)
            for e in self._enqueued_many(batch, reply)
        ]

    async def get_job(self, job_id: str) -> Job:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.commands.keys.job(job_id))  # type: ignore[assignment]
        return self._job(job_id, raw)

    async def observe(self) -> QueueObservation:
        return parse_probe(self.name, await scripts.run(self.redis, self.commands.probe()))

    async def stats(self) -> QueueStats:
        return self._stats(await self.observe())

    async def dead_jobs(self, offset: int = 0, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, oldest first, with their payload, last error and attempts."""
        raw_ids: list[bytes] = await self.redis.zrange(self.commands.keys.dead, offset, offset + limit - 1)  # type: ignore[assignment]
        ids = [i.decode() for i in raw_ids]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.commands.keys.job(job_id))
        return [self._job(i, raw) for i, raw in zip(ids, await pipe.execute(), strict=True) if raw]

    async def replay_dead(self, job_id: str) -> bool:
        """Put one dead job back to waiting with fresh attempts; False if it is not dead."""
        return int(await scripts.run(self.redis, self.commands.replay(job_id))) == 1

    async def replay_all_dead(self, batch: int = 500) -> int:
        replayed = 0
        while True:
            ids: list[bytes] = await self.redis.zrange(self.commands.keys.dead, 0, batch - 1)  # type: ignore[assignment]
            if not ids:
                return replayed
            replies = await scripts.run_many(self.redis, [self.commands.replay(i.decode()) for i in ids])
            replayed += sum(1 for r in replies if int(r) == 1)

    async def purge_dead(self) -> int:
        purged = 0
        while count := int(await scripts.run(self.redis, self.commands.purge_dead())):
            purged += count
        return purged


class SyncQueue(_Producer):
    """The same producer API, blocking, for WSGI apps and scripts."""

    def __init__(
        self,
        name: str,
        redis_client: redis.Redis,
        *,
        app: App | None = None,
        defaults: RetrySettings | None = None,
        max_payload_bytes: int = keyspace.DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        super().__init__(name, app=app, defaults=defaults, max_payload_bytes=max_payload_bytes)
        self.redis = redis_client

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
    ) -> EnqueuedJob:
        job = self._new_job(JobSpec(name, payload, job_id, priority, delay, attempts, backoff, timeout))
        return self._enqueued(job, scripts.run_sync(self.redis, self.commands.enqueue(job)))

    def enqueue_many(self, specs: Iterable[JobSpec]) -> list[EnqueuedJob]:
        jobs = self._new_jobs(specs)
        batches = self._batches(jobs)
        replies = scripts.run_many_sync(self.redis, [self.commands.enqueue_many(b) for b in batches])
        return [
            e
            for batch, reply in zip(batches, replies, strict=True)
            for e in self._enqueued_many(batch, reply)
        ]

    def get_job(self, job_id: str) -> Job:
        return self._job(job_id, self.redis.hgetall(self.commands.keys.job(job_id)))  # type: ignore[arg-type]

    def stats(self) -> QueueStats:
        return self._stats(parse_probe(self.name, scripts.run_sync(self.redis, self.commands.probe())))
