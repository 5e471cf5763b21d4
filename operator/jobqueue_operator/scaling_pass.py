"""One scaling pass of one JobQueue: observation -> policy -> actuator. Shared by the operator and dev mode.

The operator's control loop (``control_loop``) and ``jobqueue dev`` (``dev.loop``) both call
``run_pass``; they differ only in the ``Actuator`` they pass (a Kubernetes Deployment, or local
worker processes), so no scaling logic exists twice. ``removal_order`` and ``deletion_costs`` tell
either actuator which workers go first on a scale-down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jobqueue_operator import policy, readiness, spec
from worker_runtime.observation import QueueObservation, WorkerHeartbeat


class Actuator(Protocol):
    """Where replicas live. Implementations: ``kube_actuator`` (Deployment), ``dev.local_actuator``."""

    async def current_replicas(self) -> int:
        """Replicas asked for now (a Deployment's spec.replicas, or running local workers)."""
        ...

    async def scale(self, desired: int, observation: QueueObservation | None) -> None:
        """Set the replica count. When removing replicas, remove idle workers first, using the
        heartbeats in ``observation.workers`` (busy pods are kept; drained ones finish their jobs)."""
        ...


@runtime_checkable
class CountsReady(Protocol):
    """An actuator that knows how many of its replicas are ready and serving (dev mode's processes,
    the Kubernetes actuator's Deployment status). Without it, or when it answers None, the policy
    counts the pods of the workers' heartbeats."""

    async def ready_replicas(self) -> int | None: ...


@dataclass(frozen=True)
class PassResult:
    """What one pass saw and did."""

    observation: QueueObservation | None
    current: int
    decision: policy.Decision
    # What the Deployment reports of its pods (filled by the operator's control loop).
    replicas: readiness.Replicas | None = None

    @property
    def scaled(self) -> bool:
        return self.decision.desired != self.current


async def run_pass(
    jobqueue: spec.JobQueue,
    observation: QueueObservation | None,
    actuator: Actuator,
    state: policy.PolicyState,
    now: float,
    *,
    paused: bool,
) -> PassResult:
    """Decide and act once. ``observation is None`` means the probe failed (fallback logic applies);
    ``paused`` is the caller's ``spec.paused_by`` (the operator also holds a JobQueue whose
    Deployment another autoscaler scales)."""
    current = await actuator.current_replicas()
    ready = await actuator.ready_replicas() if isinstance(actuator, CountsReady) else None
    decision = policy.decide(
        jobqueue.spec.scaling,
        observation,
        current,
        state,
        now,
        paused=paused,
        concurrency=jobqueue.spec.workers.concurrency,
        ready_replicas=ready,
        flow=jobqueue.spec.flow,
    )
    if decision.desired != current:
        await actuator.scale(decision.desired, observation)
    return PassResult(observation, current, decision)


def removal_order(workers: Iterable[WorkerHeartbeat]) -> list[WorkerHeartbeat]:
    """Workers in the order they should go on a scale-down: draining ones, then idlest first."""
    return sorted(workers, key=lambda w: (not w.draining, w.inflight, -w.seen_ms, w.pod))


def deletion_costs(workers: Iterable[WorkerHeartbeat]) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` per pod: its in-flight jobs, so idle pods
    (cost 0) are deleted first by the ReplicaSet controller. A pod running several worker
    processes sums them."""
    costs: dict[str, int] = {}
    for worker in workers:
        if worker.pod:
            costs[worker.pod] = costs.get(worker.pod, 0) + (0 if worker.draining else worker.inflight)
    return costs
