"""Prometheus metrics of a worker process (names and labels: docs/metrics.md).

Every counter child whose labels are known up front (the served queue, the app's handler names,
the outcomes) is made at 0 when the worker starts (``serving``): Prometheus' ``increase()`` and
``rate()`` need a sample before the first event, so a series born at 1 hides its first retry or
dead letter. The job label is ``job_name``: ``job`` is Prometheus' own target label, and a scraped
``job`` becomes ``exported_job``.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker_runtime.replies import Ack, FailOutcome

# Job run times span milliseconds (webhooks) to minutes (reports).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# The `outcome` label of an acknowledged attempt ("released" is a hand-back at shutdown). It names
# what became of the attempt, so a failed attempt with a retry scheduled is "retried".
OUTCOMES: dict[Ack | FailOutcome, str] = {
    Ack.DONE: "completed",
    FailOutcome.RETRYING: "retried",
    FailOutcome.DEAD: "dead",
}
RELEASED = "released"
ALL_OUTCOMES = (*OUTCOMES.values(), RELEASED)


# The `job_name` label of a job whose name no handler of the app has: whatever names jobs carry (a
# producer without the app can enqueue any), the label's values stay the app's handlers and this.
UNKNOWN_JOB = "(unknown)"


class WorkerMetrics:
    """The worker's collectors, registered on the given registry (a fresh one per test).

    ``jobs`` are the app's handler names: the only values the ``job_name`` label takes, beside
    ``UNKNOWN_JOB`` (see ``job_label``).
    """

    def __init__(self, registry: CollectorRegistry, jobs: Collection[str] = ()) -> None:
        self.registry = registry
        self.known_jobs = jobs
        self.jobs = Counter(
            "jobqueue_jobs",
            "Attempts that ended, by outcome.",
            ["queue", "job_name", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "jobqueue_job_duration_seconds",
            "Handler run time of attempts that ended.",
            ["queue", "job_name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "jobqueue_job_wait_seconds",
            "Time from ready to claimed.",
            ["queue", "job_name"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "jobqueue_jobs_in_flight", "Jobs this process is running now.", ["queue"], registry=registry
        )
        self.retries = Counter(
            "jobqueue_job_retries",
            "Failed attempts scheduled for a retry.",
            ["queue", "job_name"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "jobqueue_jobs_dead_lettered",
            "Jobs moved to the dead-letter set.",
            ["queue", "job_name"],
            registry=registry,
        )
        self.stalled_recovered = Counter(
            "jobqueue_stalled_recovered",
            "Jobs recovered from expired leases.",
            ["queue"],
            registry=registry,
        )
        self.expired = Counter(
            "jobqueue_jobs_expired",
            "Jobs dropped because their TTL ran out before they started.",
            ["queue", "job_name"],
            registry=registry,
        )
        self.claim_latency = Histogram(
            "jobqueue_claim_latency_seconds",
            "Round trip of one claim call.",
            ["queue"],
            buckets=CLAIM_BUCKETS,
            registry=registry,
        )

        self.redis_up = Gauge(
            "jobqueue_redis_up",
            "1 while the worker's last round trip to Redis succeeded, else 0 (what /healthz says).",
            ["queue"],
            registry=registry,
        )

    def serving(self, queue: str) -> None:
        """Make every counter child of ``queue`` at 0 (see the module's docstring)."""
        self.stalled_recovered.labels(queue)
        for job in [*self.known_jobs, UNKNOWN_JOB]:
            for outcome in ALL_OUTCOMES:
                self.jobs.labels(queue, job, outcome)
            for counter in (self.retries, self.dead_lettered, self.expired):
                counter.labels(queue, job)

    def job_label(self, name: str | None) -> str:
        """The ``job_name`` label for a job name: bounded by the app's handlers."""
        return name if name is not None and name in self.known_jobs else UNKNOWN_JOB

    def attempt_ended(self, queue: str, job: str, outcome: Ack | FailOutcome) -> None:
        """Count an acknowledged attempt by its outcome."""
        self.jobs.labels(queue, job, OUTCOMES[outcome]).inc()
        if outcome is FailOutcome.RETRYING:
            self.retries.labels(queue, job).inc()
        elif outcome is FailOutcome.DEAD:
            self.dead_lettered.labels(queue, job).inc()
