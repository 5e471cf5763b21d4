"""The records the queue API returns: a job's snapshot, an enqueue's answer, a claimed job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker_runtime.options import JobOptions
from worker_runtime.schema import JobField
from worker_runtime.states import JobState


def _ms_to_s(raw: bytes | None) -> float | None:
    try:
        return int(raw) / 1000 if raw else None
    except ValueError:
        return None


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")  # garbage: shown as the text it is


def _int(raw: bytes | None) -> int:
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


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
    expires_at: float | None = None  # with a TTL: not started by then, the job expires
    group: str | None = None  # its group key (a tenant), counted by the queue's group rate limit

    @classmethod
    def from_hash(cls, queue: str, job_id: str, raw: dict[bytes, bytes]) -> Job:
        """The snapshot of a stored job. A hash that garbage got into (a dead-lettered
        ``CorruptJob``) still reads: what cannot be read shows as its default."""
        h = {JobField(k.decode()): v for k, v in raw.items() if k.decode() in _FIELDS}
        try:
            options = JobOptions.decode(h[JobField.OPTS])
        except Exception:  # garbled or missing: the dead-letter error says which
            options = JobOptions()
        error, traceback = h.get(JobField.ERROR), h.get(JobField.TRACEBACK)
        return cls(
            id=job_id,
            queue=queue,
            name=h.get(JobField.NAME, b"").decode(errors="replace"),
            state=JobState(h[JobField.STATE].decode()),
            payload=_json(h.get(JobField.PAYLOAD)),
            priority=options.priority,
            attempts=options.attempts,
            attempts_made=_int(h.get(JobField.ATTEMPTS_MADE)),
            progress=_json(h.get(JobField.PROGRESS)),
            result=_json(h.get(JobField.RESULT)),
            error=error.decode() if error else None,
            traceback=traceback.decode() if traceback else None,
            created_at=_ms_to_s(h.get(JobField.CREATED_AT)),
            ready_at=_ms_to_s(h.get(JobField.READY_AT) or h.get(JobField.CREATED_AT)),
            started_at=_ms_to_s(h.get(JobField.STARTED_AT)),
            finished_at=_ms_to_s(h.get(JobField.FINISHED_AT)),
            expires_at=_ms_to_s(h.get(JobField.EXPIRES_AT)),
            group=options.group,
        )


_FIELDS = frozenset(JobField)


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    """What enqueue returns at once: the id, and whether the id was new (idempotency keys)."""

    id: str
    state: JobState
    created: bool = True


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds under a lease; ``token`` proves the lease on ack.

    ``options`` are as stored: the worker fills in what the producer left to the handler and the
    queue (``options.for_handler``). ``payload`` is None when the hash had none.
    """

    id: str
    name: str
    payload: bytes | None
    attempt: int
    options: JobOptions
    ready_at_ms: int
    token: str
    stalls: int = 0  # times its worker was lost while running it

    @property
    def attempts(self) -> int:
        return self.options.attempts

    @property
    def alone(self) -> bool:
        """Whether it runs alone: its worker was lost while running it, so it may be the cause."""
        return self.stalls > 0


@dataclass(frozen=True, slots=True)
class UnreadableJob:
    """A job claimed under a lease whose hash does not read (a missing name, garbled options):
    the worker dead-letters it with ``reason``."""

    id: str
    token: str
    name: str
    reason: str
