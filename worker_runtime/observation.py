"""What a probe sees of a queue: the read-only snapshot the scaling policy decides on.

Plain frozen dataclasses with no I/O, so the operator's pure policy can import them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """Depth by state, the oldest ready job's age and the monotonic counters of one queue.

    ``observed_at_ms`` is the Redis server's clock, so rates computed from two observations do not
    depend on the clock of whoever probed.
    """

    queue: str
    observed_at_ms: int
    waiting: int = 0
    delayed: int = 0
    retry: int = 0
    active: int = 0
    completed: int = 0
    dead: int = 0
    # Age in seconds of the oldest job that is ready to run (waiting, or delayed/retry and already due).
    oldest_ready_age_s: float = 0.0
    enqueued_total: int = 0
    completed_total: int = 0
    failed_total: int = 0
    dead_total: int = 0
    workers: tuple[WorkerHeartbeat, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> int:
        """Jobs that a free worker could start now."""
        return self.waiting

    @property
    def backlog(self) -> int:
        """Jobs not yet finished that are ready or running."""
        return self.waiting + self.active

    @property
    def finished_total(self) -> int:
        """Attempts that ended (completed, or failed and retried or dead-lettered)."""
        return self.completed_total + self.failed_total
