"""Exceptions users of the runtime see."""

from __future__ import annotations


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


class JobNotFound(JobQueueError, KeyError):
    """No job with this id (never enqueued, or deleted by retention)."""
