"""One typed method per Lua script of a queue: builds the call; the reply parsers live beside them.

The producer, the worker and the probe all go through this class, so each script's keys and
arguments are assembled in exactly one place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker_runtime import keys as keyspace
from worker_runtime.job import ClaimedJob
from worker_runtime.observation import QueueObservation, WorkerHeartbeat
from worker_runtime.scripts import Script, ScriptCall


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The validated options of a job; the jobs of a batch usually share one (see ``enqueue_many``)."""

    priority: int
    delay_ms: int
    attempts: int
    backoff_base_ms: int
    backoff_cap_ms: int
    timeout_ms: int

    @property
    def limits(self) -> str:
        """Timeout and backoff in one hash field (fewer fields make bulk writes faster)."""
        return f"{self.timeout_ms}:{self.backoff_base_ms}:{self.backoff_cap_ms}"

    def script_args(self) -> tuple[int, int, int, str]:
        """Priority offset, delay ms, attempts, limits: as enqueue.lua and enqueue_many.lua take them."""
        return (self.priority + keyspace.PRIORITY_OFFSET, self.delay_ms, self.attempts, self.limits)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to be written (see ``Queue.enqueue`` for the checks)."""

    id: str
    name: str
    payload: str
    options: JobOptions


@dataclass(frozen=True, slots=True)
class ClaimResult:
    jobs: list[ClaimedJob]
    next_due_in_ms: int  # ms until the earliest delayed/retry job is due, -1 if none


class QueueCommands:
    """Builds the script calls of one queue."""

    def __init__(self, name: str) -> None:
        self.keys = keyspace.QueueKeys.for_queue(name)

    def enqueue(self, job: NewJob) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.ENQUEUE,
            [k.job(job.id), k.waiting, k.ready_since, k.delayed, k.marker, k.seq, k.counters],
            [job.id, job.name, job.payload, *job.options.script_args()],
        )

    def enqueue_many(self, jobs: Sequence[NewJob]) -> ScriptCall:
        k = self.keys
        option_sets: dict[JobOptions, int] = {}
        job_args: list[str | int] = []
        for job in jobs:
            number = option_sets.get(job.options)
            if number is None:
                number = option_sets[job.options] = len(option_sets) + 1
            job_args += (job.id, job.name, job.payload, number)
        args: list[str | int] = [k.job_prefix, len(jobs), len(option_sets)]
        for options in option_sets:
            args += options.script_args()
        return ScriptCall(
            Script.ENQUEUE_MANY,
            [k.waiting, k.ready_since, k.delayed, k.marker, k.seq, k.counters],
            [*args, *job_args],
        )

    def claim(self, worker_id: str, count: int, lease_ms: int, promote_limit: int = 1000) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.CLAIM,
            [k.waiting, k.ready_since, k.delayed, k.retry, k.active, k.marker],
            [k.job_prefix, worker_id, count, lease_ms, promote_limit],
        )

    def complete(self, job_id: str, token: str, result: str, keep_completed: int) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.COMPLETE,
            [k.job(job_id), k.active, k.completed, k.counters],
            [job_id, token, result, keep_completed, k.job_prefix],
        )

    def fail(
        self, job_id: str, token: str, error: str, traceback: str, retry_delay_ms: int, permanent: bool
    ) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.FAIL,
            [k.job(job_id), k.active, k.retry, k.dead, k.counters, k.marker],
            [job_id, token, error, traceback, retry_delay_ms, "1" if permanent else "0"],
        )

    def extend_leases(
        self, worker_id: str, heartbeat: dict[str, Any], leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> ScriptCall:
        k = self.keys
        flat = [part for pair in leases for part in pair]
        return ScriptCall(
            Script.EXTEND_LEASE,
            [k.active, k.workers],
            [lease_ms, k.job_prefix, worker_id, json.dumps(heartbeat), *flat],
        )

    def recover_stalled(
        self, worker_id: str, interval_ms: int, stale_worker_ms: int, limit: int = 1000
    ) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.RECOVER_STALLED,
            [k.stalled_check, k.active, k.waiting, k.ready_since, k.dead, k.counters, k.marker, k.workers],
            [interval_ms, k.job_prefix, worker_id, limit, stale_worker_ms],
        )

    def release(self, job_id: str, token: str) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.RELEASE, [k.job(job_id), k.active, k.waiting, k.ready_since, k.marker], [job_id, token]
        )

    def progress(self, job_id: str, token: str, progress: str) -> ScriptCall:
        return ScriptCall(Script.PROGRESS, [self.keys.job(job_id)], [token, progress])

    def replay(self, job_id: str) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.REPLAY, [k.job(job_id), k.dead, k.waiting, k.ready_since, k.marker, k.counters], [job_id]
        )

    def purge_dead(self, batch: int = 500) -> ScriptCall:
        return ScriptCall(Script.PURGE_DEAD, [self.keys.dead], [self.keys.job_prefix, batch])

    def probe(self) -> ScriptCall:
        k = self.keys
        return ScriptCall(
            Script.PROBE,
            [
                k.waiting,
                k.ready_since,
                k.delayed,
                k.retry,
                k.active,
                k.completed,
                k.dead,
                k.counters,
                k.workers,
            ],
            [],
        )


def parse_claim(reply: list[Any]) -> ClaimResult:
    return ClaimResult([ClaimedJob.from_reply(row) for row in reply[1:]], int(reply[0]))


def _pairs(flat: list[Any]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def parse_heartbeat(worker_id: str, raw: bytes) -> WorkerHeartbeat | None:
    try:
        hb = json.loads(raw)
        return WorkerHeartbeat(
            worker_id=worker_id,
            pod=str(hb.get("pod", "")),
            inflight=int(hb.get("inflight", 0)),
            concurrency=int(hb.get("concurrency", 0)),
            seen_ms=int(hb.get("seen_ms", 0)),
            draining=bool(hb.get("draining", False)),
        )
    except (ValueError, TypeError, AttributeError):
        return None  # a malformed entry must not break the probe


def parse_probe(queue: str, reply: list[Any]) -> QueueObservation:
    now, waiting, delayed, retry, active, completed, dead, oldest = (int(v) for v in reply[:8])
    counters = {name: int(value) for name, value in _pairs(reply[8]).items()}
    workers = tuple(
        hb for wid, raw in sorted(_pairs(reply[9]).items()) if (hb := parse_heartbeat(wid, raw)) is not None
    )
    return QueueObservation(
        queue=queue,
        observed_at_ms=now,
        waiting=waiting,
        delayed=delayed,
        retry=retry,
        active=active,
        completed=completed,
        dead=dead,
        oldest_ready_age_s=max(0.0, (now - oldest) / 1000) if oldest >= 0 else 0.0,
        enqueued_total=counters.get("enqueued", 0),
        completed_total=counters.get("completed", 0),
        failed_total=counters.get("failed", 0),
        dead_total=counters.get("dead", 0),
        workers=workers,
    )
