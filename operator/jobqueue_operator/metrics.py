"""Prometheus metrics of the operator (names and labels: docs/metrics.md).

The queue and replica gauges carry ``namespace``, ``jobqueue`` and ``queue``; what must exist even
for a JobQueue whose spec cannot be parsed (so it has no known queue) carries ``namespace`` and
``jobqueue`` only: ``jobqueue_spec_valid`` and ``jobqueue_condition`` (one series per condition
type, labelled with its current status, value 1), so an alert can fire on a JobQueue the operator
refuses. kube-state-metrics exports a series for every status of a condition (0 for the others);
one per type is a third of the series (about 10 KB less per JobQueue) and answers the same alerts.

The counters of a JobQueue are made at 0 when it is first served (``serving``), for every label set
known up front (each direction with each decision kind): ``increase()`` needs a sample before the
first event, so a scale-event series born at 1 would never show its first event on the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from jobqueue_operator import policy

QUEUE_LABELS = ["namespace", "jobqueue", "queue"]
OBJECT_LABELS = ["namespace", "jobqueue"]
# The `direction` label of a scale event: a change is up or down, never "none".
SCALE_DIRECTIONS = (policy.Direction.UP, policy.Direction.DOWN)


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
        self.current = gauge(
            "jobqueue_replicas_current", "Pods of the worker Deployment (its status.replicas)."
        )
        self.ready = gauge("jobqueue_replicas_ready", "Ready pods of the worker Deployment.")
        self.available = gauge("jobqueue_replicas_available", "Available pods of the worker Deployment.")
        self.max_replicas = gauge("jobqueue_replicas_max", "maxReplicas of the spec.")
        self.scale_events = Counter(
            "jobqueue_scale_events",
            "Scale changes by direction and reason.",
            [*QUEUE_LABELS, "direction", "reason"],
            registry=registry,
        )
        # Flow control (flow_bounds): a backlog held on purpose, which the age alert leaves alone.
        self.claims_paused = gauge("jobqueue_queue_claims_paused", "1 while the queue's claims are paused.")
        self.rate_limited = gauge(
            "jobqueue_queue_rate_limited",
            "1 while a rate limit or running cap holds jobs back (they wait on purpose).",
        )
        self.breaker_open = Gauge(
            "jobqueue_breaker_open",
            "1 while the circuit breaker of a job name is open or half-open (its claims stop), else 0.",
            [*QUEUE_LABELS, "job_name"],
            registry=registry,
        )
        self.breakers_open = gauge("jobqueue_queue_breakers_open", "Circuit breakers open or half-open.")
        self.group_held = gauge(
            "jobqueue_queue_group_held",
            "Waiting jobs held by group rate limits until their group's window reopens (among the waiting).",
        )
        self._breaker_jobs: dict[tuple[str, str, str], set[str]] = {}  # job names exported per queue
        self.probe_errors = Counter(
            "jobqueue_probe_errors", "Failed probes of the queue.", QUEUE_LABELS, registry=registry
        )
        self.decision_duration = Histogram(
            "jobqueue_decision_duration_seconds",
            "One probe + decide + act pass.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.spec_valid = Gauge(
            "jobqueue_spec_valid",
            "1 when the operator accepts the JobQueue's spec, 0 when it refuses it (SpecValid=False).",
            OBJECT_LABELS,
            registry=registry,
        )
        self.condition = Gauge(
            "jobqueue_condition",
            "The JobQueue's conditions: 1 for the current status of each type, 0 for the others.",
            [*OBJECT_LABELS, "condition", "status"],
            registry=registry,
        )
        self._statuses: dict[tuple[str, str, str], str] = {}  # the exported status by condition
        self._served: set[tuple[str, str, str]] = set()  # queue labels whose counters exist at 0
        self.redis_up = gauge(
            "jobqueue_redis_up", "1 when the operator's last probe of the queue succeeded, else 0."
        )
        self.is_leader = Gauge(
            "jobqueue_operator_leader",
            "1 while this operator replica holds the leader Lease (always 1 without leader election).",
            registry=registry,
        )

    def serving(self, labels: tuple[str, str, str]) -> None:
        """Make the counters of a served queue at 0 (once; see the module's docstring)."""
        if labels in self._served:
            return
        self._served.add(labels)
        self.probe_errors.labels(*labels)
        for direction in SCALE_DIRECTIONS:
            for kind in policy.DecisionKind:
                self.scale_events.labels(*labels, direction.value, kind.value)

    def conditions(self, namespace: str, jobqueue: str, conditions: Iterable[tuple[str, str]]) -> None:
        """Export ``(type, status)`` pairs (status True/False/Unknown): the series of the current
        status is 1, the series of the type's former status is removed."""
        for kind, state in conditions:
            current = state.lower()
            key = (namespace, jobqueue, kind)
            former = self._statuses.get(key)
            if former == current:
                continue  # the usual case: a dict lookup, no scan of the collector's children
            if former is not None:
                self.condition.remove(namespace, jobqueue, kind, former)
            self.condition.labels(namespace, jobqueue, kind, current).set(1)
            self._statuses[key] = current
            if kind == "SpecValid":
                self.spec_valid.labels(namespace, jobqueue).set(1 if current == "true" else 0)

    def breakers(self, labels: tuple[str, str, str], open_jobs: Iterable[str]) -> None:
        """1 for each job name whose breaker is open now, 0 for one exported before that closed."""
        now_open = set(open_jobs)
        self.breakers_open.labels(*labels).set(len(now_open))
        known = self._breaker_jobs.setdefault(labels, set())
        for job in known | now_open:
            self.breaker_open.labels(*labels, job).set(1 if job in now_open else 0)
        known |= now_open

    def forget(self, namespace: str, jobqueue: str) -> None:
        """Drop every series of a deleted JobQueue (whatever queue names it had)."""
        labels = {"namespace": namespace, "jobqueue": jobqueue}
        for key in [k for k in self._statuses if k[:2] == (namespace, jobqueue)]:
            del self._statuses[key]
        for queue_labels in [k for k in self._breaker_jobs if k[:2] == (namespace, jobqueue)]:
            del self._breaker_jobs[queue_labels]
        self._served = {k for k in self._served if k[:2] != (namespace, jobqueue)}
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
            self.ready,
            self.available,
            self.max_replicas,
            self.claims_paused,
            self.rate_limited,
            self.breaker_open,
            self.breakers_open,
            self.group_held,
            self.scale_events,
            self.probe_errors,
            self.redis_up,
            self.spec_valid,
            self.condition,
        ):
            collector.remove_by_labels(labels)
