"""Exceptions users of the runtime see."""

from __future__ import annotations

from collections.abc import Sequence


class JobQueueError(Exception):
    """Base of every error the runtime raises on purpose."""


class EnqueueError(JobQueueError, ValueError):
    """A job was refused at enqueue (bad payload, name, priority, delay...); nothing was written."""


class PayloadError(EnqueueError):
    """The payload is not JSON, too large, or does not validate against the job's model."""


class UnknownJobError(EnqueueError):
    """No handler is registered under this job name."""


class Permanent(JobQueueError):
    """Raise from a handler to fail the job for good: no retry, straight to the dead-letter set."""


class RateLimited(JobQueueError):
    """Raise from a handler when the downstream says "too many requests, retry after N seconds":
    the job runs again after ``retry_after`` seconds and the attempt does not count; with
    ``hold_queue``, no worker claims any job of the queue until then either (the claims of the
    queue are held as by a rate limit)."""

    def __init__(self, retry_after: float, *, hold_queue: bool = False) -> None:
        if (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, (int, float))
            or not (0 <= retry_after <= 86_400)
        ):
            raise ValueError(f"RateLimited retry_after must be seconds in [0, 86400], got {retry_after!r}")
        super().__init__(f"rate limited: retry after {retry_after:g}s")
        self.retry_after = float(retry_after)
        self.hold_queue = hold_queue


class JobNotFound(JobQueueError, KeyError):
    """No job with this id (never enqueued, or deleted by retention)."""


class ConfigurationError(JobQueueError):
    """Redis refuses us for a reason retrying cannot fix: wrong password, TLS verification failed,
    unknown host. The message is one line saying what is wrong; a process should exit on it."""


class RedisUnavailable(JobQueueError):
    """Redis could not be reached (refused, timed out, connection lost), even after retrying."""


class NotReplicated(RedisUnavailable):
    """A write reached the master but fewer replicas than asked confirmed it in time (Redis ``WAIT``):
    a failover now could lose it. The producer resends it (idempotent by job id) within its timeout."""


class EnqueueTimeout(RedisUnavailable):
    """An enqueue was not confirmed within the producer's ``enqueue_timeout``.

    The job may have been written all the same (the reply may be what was lost): enqueue again
    with the same ``job_id``, which writes it at most once. ``job_ids`` are the ids of the jobs of
    the call (generated ones too), ``job_id`` the first (the only one, for ``enqueue``).
    """

    def __init__(self, message: str, job_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.job_ids = tuple(job_ids)

    @property
    def job_id(self) -> str:
        return self.job_ids[0]
