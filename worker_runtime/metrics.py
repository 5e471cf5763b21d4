"""Prometheus metrics of a worker process (names and labels: docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Job run times span milliseconds (webhooks) to minutes (reports).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class WorkerMetrics:
    """The worker's collectors, registered on the given registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs = Counter(
            "jobqueue_jobs",
            "Attempts that ended, by outcome.",
            ["queue", "job", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "jobqueue_job_duration_seconds",
            "Handler run time of attempts that ended.",
            ["queue", "job"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.wait = Histogram(
            "jobqueue_job_wait_seconds",
            "Time from ready to claimed.",
            ["queue", "job"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "jobqueue_jobs_in_flight", "Jobs this process is running now.", ["queue"], registry=registry
        )
        self.retries = Counter(
            "jobqueue_job_retries",
            "Failed attempts scheduled for a retry.",
            ["queue", "job"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "jobqueue_jobs_dead_lettered",
            "Jobs moved to the dead-letter set.",
            ["queue", "job"],
            registry=registry,
        )
        self.stalled_recovered = Counter(
            "jobqueue_stalled_recovered",
            "Jobs recovered from expired leases.",
            ["queue"],
            registry=registry,
        )
        self.claim_latency = Histogram(
            "jobqueue_claim_latency_seconds",
            "Round trip of one claim call.",
            ["queue"],
            buckets=CLAIM_BUCKETS,
            registry=registry,
        )
