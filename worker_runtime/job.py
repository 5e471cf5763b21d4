"""Job states and the records the queue API returns."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from worker_runtime import keys as keyspace


class JobState(enum.StrEnum):
    WAITING = "waiting"  # ready, in priority order
    DELAYED = "delayed"  # enqueued with a delay that is not yet due
    ACTIVE = "active"  # claimed by a worker under a lease
    COMPLETED = "completed"
    FAILED = "failed"  # the last attempt failed; a retry is scheduled (backoff)
    DEAD = "dead"  # attempts used up or a permanent error: in the dead-letter set


TERMINAL = frozenset({JobState.COMPLETED, JobState.DEAD})
SCHEDULED = frozenset({JobState.DELAYED, JobState.FAILED})


def _ms_to_s(raw: bytes | None) -> float | None:
    return int(raw) / 1000 if raw else None


def _json(raw: bytes | None) -> Any:
    return json.loads(raw) if raw else None


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job, as ``Queue.get_job`` reads it. Times are Unix seconds."""

    id: str
    queue: str
    name: str
    state: JobState
    payload: Any
    priority: int
    attempts: int
    attempts_made: int
    progress: Any = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    created_at: float | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_hash(cls, queue: str, job_id: str, h: dict[bytes, bytes]) -> Job:
        error = h.get(b"error")
        traceback = h.get(b"traceback")
        return cls(
            id=job_id,
            queue=queue,
            name=h[b"name"].decode(),
            state=JobState(h[b"state"].decode()),
            payload=_json(h.get(b"payload")),
            priority=int(h[b"score"]) // 2**32 - keyspace.PRIORITY_OFFSET,
            attempts=int(h.get(b"attempts", b"1")),
            attempts_made=int(h.get(b"attempts_made", b"0")),
            progress=_json(h.get(b"progress")),
            result=_json(h.get(b"result")),
            error=error.decode() if error else None,
            traceback=traceback.decode() if traceback else None,
            created_at=_ms_to_s(h.get(b"created_at")),
            ready_at=_ms_to_s(h.get(b"ready_at") or h.get(b"created_at")),
            started_at=_ms_to_s(h.get(b"started_at")),
            finished_at=_ms_to_s(h.get(b"finished_at")),
        )


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    """What enqueue returns at once: the id, and whether the id was new (idempotency keys)."""

    id: str
    state: JobState
    created: bool = True


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds under a lease; ``token`` proves the lease on ack."""

    id: str
    name: str
    payload: bytes
    attempt: int
    attempts: int
    timeout_ms: int
    backoff_base_ms: int
    backoff_cap_ms: int
    ready_at_ms: int
    token: str

    @classmethod
    def from_reply(cls, row: list[Any]) -> ClaimedJob:
        def text(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v)

        timeout_ms, backoff_base_ms, backoff_cap_ms = (int(v) for v in text(row[5]).split(":"))
        return cls(
            id=text(row[0]),
            name=text(row[1]),
            payload=row[2],
            attempt=int(row[3]),
            attempts=int(row[4]),
            timeout_ms=timeout_ms,
            backoff_base_ms=backoff_base_ms,
            backoff_cap_ms=backoff_cap_ms,
            ready_at_ms=int(row[6]),
            token=text(row[7]),
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts by state, the oldest ready job's age and the counters, as ``Queue.stats`` returns."""

    waiting: int
    delayed: int
    active: int
    completed: int
    failed: int  # jobs whose retry is scheduled
    dead: int
    oldest_ready_age_s: float
    enqueued_total: int
    completed_total: int
    failed_total: int
    dead_total: int
