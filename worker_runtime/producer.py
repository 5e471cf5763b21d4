"""What both producers (``Queue``, ``SyncQueue``) do, written once: checking jobs before anything is
written, and each operation as a generator of Redis steps (``operations``) that either client runs.

Nothing here does I/O, so the async and the blocking API cannot drift apart.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import string
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from worker_runtime import flow, schedule_ops
from worker_runtime import keys as keyspace
from worker_runtime import options as job_options
from worker_runtime.app import App, JobDefinition, encode_payload
from worker_runtime.commands import NewJob, QueueCommands
from worker_runtime.connection import as_error, is_redis_failure
from worker_runtime.errors import EnqueueError, EnqueueTimeout, JobNotFound
from worker_runtime.job import EnqueuedJob, Job
from worker_runtime.observation import QueueObservation
from worker_runtime.operations import Operation, Read, Replicated
from worker_runtime.options import JobOptions, JobSpec
from worker_runtime.replies import CancelOutcome, ReplayOutcome
from worker_runtime.schedules import Schedule, ScheduleInfo
from worker_runtime.scripts import ScriptCall
from worker_runtime.settings import RetrySettings

log = logging.getLogger("jobqueue.queue")

ENQUEUE_BATCH = 1000
RESOLVED_OPTIONS_KEPT = 1024
# Dead jobs replayed or purged per script call: short calls, so Redis serves others in between.
DEAD_BATCH = 500
# Seconds an enqueue may take, resends on a lost connection included, before EnqueueTimeout: long
# enough to ride out a Redis restart or failover, short enough for a web request to answer.
DEFAULT_ENQUEUE_TIMEOUT_SECONDS = 10.0
MAX_ENQUEUE_TIMEOUT_SECONDS = 3600.0
# With ``wait_for_replicas``: how long one write waits for its replicas before it is resent. A
# replica on the same network confirms in a millisecond; a second covers a busy one.
DEFAULT_REPLICA_TIMEOUT_SECONDS = 1.0
# Job ids double as idempotency keys (order ids, webhook ids...); they become part of a key name.
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "._:-")


Client = TypeVar("Client")


class _Keep(enum.Enum):
    """A part of the flow control a call leaves as it is."""

    KEEP = "keep"


KEEP = _Keep.KEEP


class Producer(Generic[Client]):
    """Checks, and the operations of ``Queue`` and ``SyncQueue``; see ``Queue`` for the API."""

    def __init__(
        self,
        name: str,
        redis_client: Client,
        *,
        app: App | None = None,
        defaults: RetrySettings | None = None,
        max_payload_bytes: int = keyspace.DEFAULT_MAX_PAYLOAD_BYTES,
        enqueue_timeout: float = DEFAULT_ENQUEUE_TIMEOUT_SECONDS,
        wait_for_replicas: int = 0,
        replica_timeout: float | None = None,
    ) -> None:
        if app is not None and app.queue != name:
            raise ValueError(f"app serves queue {app.queue!r}, not {name!r}")
        self.name = name
        self.redis = redis_client
        self.app = app
        self.defaults = defaults or RetrySettings()
        self.max_payload_bytes = max_payload_bytes
        self.enqueue_timeout = _check_enqueue_timeout(enqueue_timeout)
        _check_count("wait_for_replicas", wait_for_replicas)
        self.wait_for_replicas = wait_for_replicas
        if replica_timeout is None:
            replica_timeout = min(DEFAULT_REPLICA_TIMEOUT_SECONDS, self.enqueue_timeout)
        self._replica_timeout_ms = _check_replica_timeout(replica_timeout, self.enqueue_timeout)
        self.commands = QueueCommands(name)
        # Resolved options by JobSpec.options_key(): most producers send a few option sets over
        # and over, so each is checked and encoded once (bounded, for callers that vary them).
        self._resolved: dict[tuple[Any, ...], tuple[JobDefinition | None, JobOptions]] = {}

    # --- checks (no I/O) -------------------------------------------------------------------------

    def _new_job(self, spec: JobSpec) -> NewJob:
        return self._new_jobs([spec])[0]

    def _new_jobs(self, specs: Iterable[JobSpec]) -> list[NewJob]:
        """Check jobs and turn them into what the scripts write; raises ``EnqueueError``.

        Jobs usually share their options, so each distinct set is resolved once.
        """
        specs = list(specs)
        random_ids = os.urandom(16 * len(specs)).hex()  # one system call for the whole batch
        resolved = self._resolved
        if len(resolved) > RESOLVED_OPTIONS_KEPT:
            resolved.clear()
        jobs = []
        for i, spec in enumerate(specs):
            key = spec.options_key()
            try:
                found = resolved.get(key)
            except TypeError:  # an unhashable option: let the checks say what is wrong with it
                found = self._options(spec)
            if found is None or (self.app is not None and found[0] is not self.app.jobs.get(spec.name)):
                found = resolved[key] = self._options(spec)  # new, or its handler was replaced
            definition, options = found
            if definition is not None:
                definition.parse_payload(spec.payload)  # refuse a bad payload now, not in the worker
            if spec.job_id is None:
                job_id = random_ids[32 * i : 32 * i + 32]
            elif (
                not isinstance(spec.job_id, str)
                or not spec.job_id
                or len(spec.job_id) > 200
                or not _ID_CHARS.issuperset(spec.job_id)
            ):
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
        if definition is None and (not isinstance(spec.name, str) or not spec.name or len(spec.name) > 200):
            raise EnqueueError(f"job name must be 1..200 characters, got {spec.name!r}")
        return definition, job_options.resolve(spec, definition, self.defaults)

    def _timed_out(self, jobs: Sequence[NewJob], last_error: BaseException | None) -> EnqueueTimeout:
        """The error of an enqueue that was not confirmed in time; says how to retry it safely."""
        ids = [job.id for job in jobs]
        shown = ids[0] if len(ids) == 1 else f"{ids[0]}, ... ({len(ids)} jobs)"
        cause = f" ({as_error(last_error)})" if last_error and is_redis_failure(last_error) else ""
        return EnqueueTimeout(
            f"enqueue of {shown} to queue {self.name!r} not confirmed within {self.enqueue_timeout:g}s"
            f"{cause}; it may have been written: enqueue again with the same job_id to write it at "
            "most once",
            ids,
        )

    # --- operations (generators of Redis steps, see ``operations``) ------------------------------

    def _write(self, jobs: Sequence[NewJob]) -> Operation[list[EnqueuedJob]]:
        """One script call for one job, else one bulk call per 1,000, all in one round trip; with
        ``wait_for_replicas``, ``WAIT`` in the same round trip (``NotReplicated`` is resent)."""
        calls: list[ScriptCall[Any]]
        if len(jobs) == 1:
            calls = [self.commands.enqueue(jobs[0])]
        else:
            # One script call per 1,000 jobs keeps each call short, so Redis serves others in between.
            batches = [jobs[i : i + ENQUEUE_BATCH] for i in range(0, len(jobs), ENQUEUE_BATCH)]
            calls = [self.commands.enqueue_many(batch) for batch in batches]
        if self.wait_for_replicas:
            replies = yield Replicated(calls, self.wait_for_replicas, self._replica_timeout_ms)
        elif len(calls) == 1:
            replies = [(yield calls[0])]
        else:
            replies = yield calls
        return [job for reply in replies for job in (reply if isinstance(reply, list) else [reply])]

    def _get_job(self, job_id: str) -> Operation[Job]:
        raw = yield Read([("HGETALL", self.commands.keys.job(job_id))])
        return self._job(job_id, raw[0])

    def _job(self, job_id: str, raw: dict[bytes, bytes]) -> Job:
        if not raw:
            raise JobNotFound(f"no job {job_id!r} in queue {self.name!r}")
        return Job.from_hash(self.name, job_id, raw)

    def _stats(self) -> Operation[QueueObservation]:
        observation: QueueObservation = yield self.commands.probe()
        return observation

    def _flow(self) -> Operation[flow.FlowConfig]:
        (raw,) = yield Read([("HGETALL", self.commands.keys.flow)])
        return flow.FlowConfig.from_hash({k.decode(): v.decode() for k, v in raw.items()})

    def _configure_flow(
        self,
        *,
        paused: bool | None = None,
        rate_limit: flow.RateLimit | _Keep | None = KEEP,
        max_running: int | _Keep | None = KEEP,
        breaker: flow.Breaker | _Keep | None = KEEP,
        group_rate_limit: flow.RateLimit | _Keep | None = KEEP,
    ) -> Operation[flow.FlowConfig]:
        """Change the given parts of the flow control (the others kept); checked before any step."""
        changes: dict[str, str] = {}
        wanted = flow.FlowConfig(
            paused=bool(paused),
            rate_limit=None if isinstance(rate_limit, _Keep) else rate_limit,
            max_running=None if isinstance(max_running, _Keep) else max_running,
            breaker=None if isinstance(breaker, _Keep) else breaker,
            group_rate_limit=None if isinstance(group_rate_limit, _Keep) else group_rate_limit,
        ).fields()
        if not isinstance(max_running, _Keep):
            flow.check_max_running(max_running)
            changes[flow.FlowField.MAX_RUNNING] = wanted[flow.FlowField.MAX_RUNNING]
        if paused is not None:
            changes[flow.FlowField.PAUSED] = wanted[flow.FlowField.PAUSED]
        if not isinstance(rate_limit, _Keep):
            for name in (flow.FlowField.RATE_JOBS, flow.FlowField.RATE_MS):
                changes[name] = wanted[name]
        if not isinstance(breaker, _Keep):
            for name in flow.BREAKER_FIELDS:
                changes[name] = wanted[name]
        if not isinstance(group_rate_limit, _Keep):
            for name in (flow.FlowField.GROUP_RATE_JOBS, flow.FlowField.GROUP_RATE_MS):
                changes[name] = wanted[name]
        config: flow.FlowConfig = yield self.commands.configure_flow(changes)
        return config

    def _schedule(
        self, name: str, job: str, cron: str | None, every: float | None, payload: Any, tz: str, missed: str
    ) -> Schedule:
        """The schedule ``add_schedule`` asks for, checked (``ValueError`` naming what is wrong)."""
        if self.app is not None:
            self.app.definition(job)
        text = encode_payload(payload, self.max_payload_bytes)
        return Schedule(name, job, cron, every, tz, text, missed)  # type: ignore[arg-type]  # checked there

    def _add_schedule(self, schedule: Schedule) -> Operation[bool]:
        changed = yield from schedule_ops.add(self.commands, [schedule])
        return changed == 1

    def _schedules(self) -> Operation[list[ScheduleInfo]]:
        return (yield from schedule_ops.listing(self.commands))

    def _remove_schedule(self, name: str) -> Operation[bool]:
        return (yield from schedule_ops.remove(self.commands, name))

    def _dead_jobs(self, offset: int, limit: int) -> Operation[list[Job]]:
        _check_count("offset", offset)
        _check_count("limit", limit)
        if limit == 0:
            return []
        (raw_ids,) = yield Read([("ZRANGE", self.commands.keys.dead, offset, offset + limit - 1)])
        ids = [i.decode() for i in raw_ids]
        if not ids:
            return []
        hashes = yield Read([("HGETALL", self.commands.keys.job(i)) for i in ids])
        return [self._job(i, raw) for i, raw in zip(ids, hashes, strict=True) if raw]

    def _cancel(self, job_id: str) -> Operation[bool]:
        outcome = yield self.commands.cancel(job_id)
        return outcome is CancelOutcome.CANCELLED

    def _replay_dead(self, job_id: str) -> Operation[bool]:
        outcome = yield self.commands.replay(job_id)
        return outcome is ReplayOutcome.REPLAYED

    def _replay_all_dead(self, batch: int) -> Operation[int]:
        """Replay what is dead now; a job that dies again meanwhile is not replayed twice.

        Ids of the dead-letter set with no dead job behind them (no hash, or a job in another
        state) are dropped from the set by the script and logged, so the loop always ends.
        """
        _check_count("batch", batch, minimum=1)
        cutoff, remaining = yield from self._dead_now()
        replayed, dropped = 0, []
        while remaining > 0:
            (raw_ids,) = yield Read([self._oldest_dead(cutoff, min(batch, remaining))])
            if not raw_ids:
                break
            remaining -= len(raw_ids)
            ids = [i.decode() for i in raw_ids]
            outcomes = yield [self.commands.replay(i) for i in ids]
            replayed += outcomes.count(ReplayOutcome.REPLAYED)
            dropped += [i for i, o in zip(ids, outcomes, strict=True) if o is not ReplayOutcome.REPLAYED]
        if dropped:
            log.warning(
                "queue %s: dropped %d id(s) from the dead-letter set with no dead job behind them: %s",
                self.name, len(dropped), ", ".join(dropped[:20]) + (" ..." if len(dropped) > 20 else ""),
            )  # fmt: skip
        return replayed

    def _purge_dead(self, job_ids: Iterable[str] | None) -> Operation[int]:
        """Delete the given dead jobs, or every job dead now; ids that are not dead are left alone."""
        if job_ids is not None:
            ids = list(dict.fromkeys(job_ids))
            if not all(isinstance(i, str) for i in ids):
                raise TypeError("job_ids must be strings")
            chunks = [ids[i : i + DEAD_BATCH] for i in range(0, len(ids), DEAD_BATCH)]
            calls = [self.commands.purge_dead(ids=chunk) for chunk in chunks]
            return sum((yield calls)) if calls else 0
        cutoff, remaining = yield from self._dead_now()
        purged = 0
        while remaining > 0:
            count = min(DEAD_BATCH, remaining)
            purged += yield self.commands.purge_dead(batch=count, before_ms=cutoff)
            remaining -= count
        return purged

    def _dead_now(self) -> Operation[tuple[int, int]]:
        """The server's clock, and how many jobs were dead by then."""
        (now,) = yield Read([("TIME",)])
        cutoff = int(now[0]) * 1000 + int(now[1]) // 1000
        (count,) = yield Read([("ZCOUNT", self.commands.keys.dead, "-inf", cutoff)])
        return cutoff, int(count)

    def _oldest_dead(self, cutoff_ms: int, count: int) -> tuple[Any, ...]:
        return ("ZRANGEBYSCORE", self.commands.keys.dead, "-inf", cutoff_ms, "LIMIT", 0, count)


def _check_count(what: str, value: Any, minimum: int = 0) -> None:
    if type(value) is not int or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")


def _check_replica_timeout(value: Any, enqueue_timeout: float) -> int:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 < value <= enqueue_timeout:
        raise ValueError(
            f"replica_timeout must be seconds in (0, enqueue_timeout={enqueue_timeout:g}], got {value!r}"
        )
    return max(1, round(float(value) * 1000))


def _check_enqueue_timeout(value: Any) -> float:
    if (
        type(value) not in (int, float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_ENQUEUE_TIMEOUT_SECONDS
    ):
        raise ValueError(
            f"enqueue_timeout must be seconds in (0, {MAX_ENQUEUE_TIMEOUT_SECONDS:g}], got {value!r}"
        )
    return float(value)
