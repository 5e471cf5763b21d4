"""One JobQueue's scaling spec on a cluster model: the workloads it is tried on and the runs.

Pure: the caller reads files and prints. Shared by ``jobqueue simulate`` and ``bench/scaling.py``, so
both run the same model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobqueue_operator import spec
from jobqueue_operator.simulate import autoscalers, model, report, traces

# The synthetic shapes' base load, as a fraction of maxReplicas' worth of work: their peaks (6 x
# base, and the backlog a surge builds while pods start) then fit within maxReplicas.
BASE_FRACTION = 0.1
# KEDA's redis trigger has no default listLength; 5 is the value of KEDA's own examples.
KEDA_LIST_LENGTH = 5


@dataclass(frozen=True)
class Scenario:
    """The JobQueue's scaling spec and the cluster it would run on."""

    scaling: spec.ScalingSpec
    concurrency: int
    grace_s: float
    job_timeout_s: float
    startup_s: float
    job_times: traces.JobTimes
    seed: int
    base_rate: float | None = None
    explicit_ready: bool = False

    @classmethod
    def of(
        cls,
        jobqueue: spec.JobQueue,
        *,
        startup_s: float,
        job_times: traces.JobTimes,
        seed: int,
        base_rate: float | None = None,
    ) -> Scenario:
        return cls(
            scaling=jobqueue.spec.scaling,
            concurrency=jobqueue.spec.workers.concurrency,
            grace_s=float(jobqueue.termination_grace_period_seconds),
            job_timeout_s=float(jobqueue.spec.jobs.timeout_seconds),
            startup_s=startup_s,
            job_times=job_times,
            seed=seed,
            base_rate=base_rate,
        )

    @property
    def rate(self) -> float:
        """The shapes' base arrival rate in jobs/s: given, else ``BASE_FRACTION`` of maxReplicas' work."""
        if self.base_rate is not None:
            return self.base_rate
        per_replica = self.concurrency / self.job_times.mean
        return max(1.0, BASE_FRACTION * self.scaling.max_replicas) * per_replica

    @property
    def target_s(self) -> float | None:
        target = self.scaling.targets.max_oldest_age
        return None if target is None else float(target)

    def shape(self, name: str) -> model.Workload:
        return traces.shape(name, self.rate, self.job_times, self.seed, max_job_s=self.job_timeout_s)

    def recorded(self, name: str, text: str) -> model.Workload:
        return traces.recorded(name, text, self.job_times, self.seed, max_job_s=self.job_timeout_s)

    def cluster(self, grace_s: float | None = None) -> model.Cluster:
        return model.Cluster(
            concurrency=self.concurrency,
            startup_s=self.startup_s,
            grace_s=self.grace_s if grace_s is None else grace_s,
            explicit_ready=self.explicit_ready,
        )


@dataclass(frozen=True)
class Outcome:
    """One run and its figures."""

    run: model.Run
    summary: report.Summary
    kinds: dict[str, int]


def run_policy(scenario: Scenario, workload: model.Workload) -> Outcome:
    """The JobQueue's own spec through ``policy.decide``."""
    scaler = autoscalers.PolicyAutoscaler(scenario.scaling, scenario.concurrency)
    run = model.Model(
        workload, scenario.cluster(), scaler, seed=scenario.seed, target_s=scenario.target_s
    ).run()
    return Outcome(run, report.summarize(run), dict(scaler.kinds))


def run_keda(scenario: Scenario, workload: model.Workload) -> Outcome:
    """KEDA + HPA with their defaults, on the same workload, the same pods and maxReplicas."""
    scaler = autoscalers.KedaHpa(list_length=KEDA_LIST_LENGTH, max_replicas=scenario.scaling.max_replicas)
    cluster = scenario.cluster(grace_s=autoscalers.KUBERNETES_GRACE_S)
    run = model.Model(workload, cluster, scaler, seed=scenario.seed, target_s=scenario.target_s).run()
    return Outcome(run, report.summarize(run), {})
