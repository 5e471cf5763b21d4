"""Prometheus metrics of the operator (names and labels: docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

QUEUE_LABELS = ["namespace", "jobqueue", "queue"]


class OperatorMetrics:
    """The operator's collectors, registered on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, QUEUE_LABELS, registry=registry)

        self.waiting = gauge("jobqueue_queue_waiting", "Jobs ready to run.")
        self.delayed = gauge("jobqueue_queue_delayed", "Jobs delayed or waiting for a retry.")
        self.active = gauge("jobqueue_queue_active", "Jobs running.")
        self.dead = gauge("jobqueue_queue_dead", "Jobs in the dead-letter set.")
        self.oldest_age = gauge("jobqueue_queue_oldest_age_seconds", "Age of the oldest ready job.")
        self.age_target = gauge("jobqueue_queue_age_target_seconds", "The maxOldestAge target.")
        self.throughput = gauge("jobqueue_queue_throughput", "Completed jobs per second.")
        self.desired = gauge("jobqueue_replicas_desired", "Replicas the policy asks for.")
        self.current = gauge("jobqueue_replicas_current", "Replicas of the worker Deployment.")
        self.max_replicas = gauge("jobqueue_replicas_max", "maxReplicas of the spec.")
        self.scale_events = Counter(
            "jobqueue_scale_events",
            "Scale changes by direction and reason.",
            [*QUEUE_LABELS, "direction", "reason"],
            registry=registry,
        )
        self.probe_errors = Counter(
            "jobqueue_probe_errors", "Failed probes of the queue.", QUEUE_LABELS, registry=registry
        )
        self.decision_duration = Histogram(
            "jobqueue_decision_duration_seconds",
            "One probe + decide + act pass.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )

    def forget(self, namespace: str, jobqueue: str, queue: str) -> None:
        """Drop the series of a deleted JobQueue."""
        labels = {"namespace": namespace, "jobqueue": jobqueue, "queue": queue}
        for collector in (
            self.waiting,
            self.delayed,
            self.active,
            self.dead,
            self.oldest_age,
            self.age_target,
            self.throughput,
            self.desired,
            self.current,
            self.max_replicas,
            self.scale_events,
            self.probe_errors,
        ):
            collector.remove_by_labels(labels)
