"""What a probe sees of a queue: the read-only snapshot the scaling policy decides on, and what
``Queue.stats()`` returns (one shape for both).

Plain frozen dataclasses with no I/O, so the operator's pure policy can import them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker_runtime.flow import BreakerState, FlowConfig


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """One live worker process as it last reported itself (written with its lease extensions)."""

    worker_id: str
    pod: str
    inflight: int
    concurrency: int
    seen_ms: int
    draining: bool = False


@dataclass(frozen=True, slots=True)
class QueueObservation:
    """Jobs in each state (one field per ``states.JobState``), the oldest ready job's age and the
    monotonic counters of one queue.

    ``observed_at_ms`` is the Redis server's clock, so rates computed from two observations do not
    depend on the clock of whoever probed.
    """

    queue: str
    observed_at_ms: int
    waiting: int = 0
    delayed: int = 0
    retrying: int = 0  # the last attempt failed, a retry is scheduled (formerly ``retry``)
    active: int = 0
    completed: int = 0
    dead: int = 0
    # Age in seconds of the oldest job that is ready to run (waiting, or delayed/retrying and due).
    oldest_ready_age_s: float = 0.0
    enqueued_total: int = 0
    completed_total: int = 0
    failed_total: int = 0  # failed attempts, whether retried or dead-lettered
    dead_total: int = 0
    workers: tuple[WorkerHeartbeat, ...] = field(default_factory=tuple)
    expired: int = 0
    expired_total: int = 0
    # Flow control as configured in Redis (none by default), and the jobs started in the rate
    # limit's current window.
    flow: FlowConfig = field(default_factory=FlowConfig)
    rate_used: int = 0
    # The earliest next tick of the queue's schedules (ms, the server's clock; None: no schedule).
    next_schedule_ms: int | None = None
    # The open and half-open circuit breakers, by job name (their jobs are parked in delayed).
    breakers: tuple[BreakerState, ...] = ()
    # Waiting jobs (counted in ``waiting``) that their group's rate limit holds back: no worker
    # could start them now, however many there were.
    group_held: int = 0

    @property
    def retry(self) -> int:
        """The former name of ``retrying``, still accepted as a keyword and readable."""
        return self.retrying

    @property
    def schedule_due(self) -> bool:
        """A schedule's tick is due and not yet fired (nobody fired it: no worker is up)."""
        return self.next_schedule_ms is not None and self.next_schedule_ms <= self.observed_at_ms

    @property
    def ready(self) -> int:
        """Jobs that a free worker could start now (not those their group's limit holds)."""
        return max(0, self.waiting - self.group_held)

    @property
    def backlog(self) -> int:
        """Jobs not yet finished that are ready or running."""
        return self.waiting + self.active

    @property
    def finished_total(self) -> int:
        """Attempts that ended (completed, or failed and retried or dead-lettered)."""
        return self.completed_total + self.failed_total


_dataclass_init = QueueObservation.__init__


def _init_accepting_retry(
    self: QueueObservation, *args: Any, retry: int | None = None, **kwargs: Any
) -> None:
    # Observations are built from outside the runtime too (simulators, tests): keep the old keyword.
    if retry is not None:
        if "retrying" in kwargs:
            raise TypeError("give retrying or its former name retry, not both")
        kwargs["retrying"] = retry
    _dataclass_init(self, *args, **kwargs)


QueueObservation.__init__ = _init_accepting_retry  # type: ignore[method-assign]
