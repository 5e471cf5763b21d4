"""What the scripts answer, typed: their error codes and the results their Python twins return.

A script refuses with a negative integer (BullMQ's ``ErrorCode`` is the model); each script's twin
in ``commands.py`` turns every reply into one of the types below, so no caller compares a raw
reply with a number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from worker_runtime.flow import Hold
from worker_runtime.job import ClaimedJob, UnreadableJob


class ErrorCode(enum.IntEnum):
    """The negative returns of the scripts (each script's header says which it uses)."""

    MISSING_JOB = -1  # no such job (never enqueued, or deleted by retention)
    STALE_TOKEN = -2  # the caller's token no longer holds the job's lease
    NOT_DEAD = -3  # replay of a job that is not in the dead-letter set
    NOT_ELECTED = -4  # another worker holds this interval's stalled-job check
    STALE_TICK = -5  # the schedule's stored tick is not the one fired (fired already, or removed)
    NOT_PENDING = -6  # cancel of a job that is running or finished

    @classmethod
    def of(cls, reply: Any) -> ErrorCode | None:
        """The error code a reply carries, or None when it is a result."""
        return cls(reply) if type(reply) is int and reply < 0 else None


class Ack(enum.StrEnum):
    """An acknowledgement by a lease holder (complete, release, progress; a refused fail)."""

    DONE = "done"
    STALE = "stale"  # the lease was recovered by another worker, or the job already finished
    MISSING = "missing"  # the job is gone


# Acks that did not count: the caller no longer owns the job.
REFUSED = frozenset({Ack.STALE, Ack.MISSING})


def ack(reply: Any) -> Ack:
    code = ErrorCode.of(reply)
    if code is None:
        return Ack.DONE
    return {ErrorCode.STALE_TOKEN: Ack.STALE, ErrorCode.MISSING_JOB: Ack.MISSING}[code]


class FailOutcome(enum.StrEnum):
    """Where a failed attempt sent its job (``fail.lua`` answers with the job's new state)."""

    RETRYING = "retrying"
    DEAD = "dead"


class FireOutcome(enum.StrEnum):
    """What firing one tick of a schedule did (``fire_schedule.lua``)."""

    ENQUEUED = "enqueued"
    SKIPPED = "skipped"  # a missed tick dropped (missed="skip"), or its job id existed
    STALE = "stale"  # the tick was fired already by someone else, or the schedule is gone


class Postponed(enum.StrEnum):
    """A job put back for later by ``postpone.lua`` (its handler raised ``RateLimited``)."""

    POSTPONED = "postponed"


def postponed(reply: Any) -> Postponed | Ack:
    return Postponed.POSTPONED if ErrorCode.of(reply) is None else ack(reply)


class CancelOutcome(enum.StrEnum):
    CANCELLED = "cancelled"
    NOT_PENDING = "not_pending"  # running, or finished: left as it is
    MISSING = "missing"


class ReplayOutcome(enum.StrEnum):
    REPLAYED = "replayed"
    NOT_DEAD = "not_dead"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Recovery:
    """One stalled-job check: ``elected`` is False when another worker held this interval."""

    elected: bool
    recovered: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True)
class ClaimResult:
    jobs: list[ClaimedJob]
    expired: list[str]  # handler names of the jobs dropped because their TTL ran out
    next_due_in_ms: int | None  # until the earliest delayed or retrying job is due; None if none
    # Jobs the claim dead-lettered because their hash is missing or garbled (ids).
    buried: list[str] = field(default_factory=list)
    # Claimed jobs whose hash does not read: held under a lease, for the worker to dead-letter.
    unreadable: list[UnreadableJob] = field(default_factory=list)
    # The worker reserved a job that must run alone: it claims nothing until it runs nothing.
    isolate: bool = False
    # Why flow control let the claim start nothing (None: it did not hold it back), and for how
    # long at most (the rate window's rest; None when a change, not time, ends the hold).
    held: Hold | None = None
    held_ms: int | None = None
    # Jobs the claim parked (delayed) because their name's circuit breaker is open.
    parked: int = 0
