"""What the simulator can drive: the project's own policy, and an emulation of KEDA + HPA's defaults.

``PolicyAutoscaler`` calls ``policy.decide`` exactly as the operator's control pass does, carrying
``Decision.state`` from one poll to the next.

``KedaHpa`` emulates a ScaledObject with one ``redis`` (Redis Lists) trigger and every default, as
documented at keda.sh (ScaledObject specification; Redis Lists scaler) and kubernetes.io (Horizontal
Pod Autoscaling: the algorithm, and the behavior field's defaults):

| part                          | emulated                                                                   |
| ----------------------------- | -------------------------------------------------------------------------- |
| metric                        | the list's length: waiting jobs only (running ones are not in the list)   |
| KEDA, every pollingInterval   | 30 s: at 0 replicas and metric > activationListLength (0), scale to 1;    |
|                               | after cooldownPeriod (300 s) with the metric at 0, scale to 0            |
| HPA, every sync period        | 15 s, from 1 replica up: desired = ceil(metric / listLength) (External     |
|                               | metric, AverageValue target), unless metric / (listLength x replicas) is  |
|                               | within the 0.1 tolerance of 1                                              |
| HPA scale-up                  | no stabilization; at most max(4 pods, 100 %) per 15 s                      |
| HPA scale-down                | the highest recommendation of the last 300 s; 100 % per 15 s               |
| bounds                        | minReplicaCount 0 (the HPA's own minimum is 1), maxReplicaCount as given  |

Pods drain on SIGTERM within Kubernetes' default terminationGracePeriodSeconds of 30 s (the caller's
``model.Cluster``), as the same workers would under KEDA.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from jobqueue_operator import policy, spec
from worker_runtime.observation import QueueObservation

KEDA_POLLING_S = 30.0
KEDA_COOLDOWN_S = 300.0
KEDA_ACTIVATION = 0
HPA_SYNC_S = 15.0
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_S = 300.0
HPA_UP_PODS = 4
HPA_UP_PERCENT = 100
HPA_PERIOD_S = 15.0
KUBERNETES_GRACE_S = 30.0


@dataclass
class PolicyAutoscaler:
    """``policy.decide`` with the JobQueue's scaling spec; counts the decision kinds it returned."""

    scaling: spec.ScalingSpec
    concurrency: int
    name: str = "jobqueue"
    state: policy.PolicyState = field(default_factory=policy.PolicyState)
    kinds: Counter[str] = field(default_factory=Counter)
    last: policy.Decision | None = None

    @property
    def interval(self) -> float:
        return float(self.scaling.polling_interval)

    def step(self, now: float, observation: QueueObservation, current: int, ready: int | None) -> int:
        decision = policy.decide(
            self.scaling,
            observation,
            current,
            self.state,
            now,
            paused=False,
            concurrency=self.concurrency,
            ready_replicas=ready,
        )
        self.state = decision.state
        self.kinds[str(decision.kind)] += 1
        self.last = decision
        return decision.desired


@dataclass
class KedaHpa:
    """KEDA's Redis Lists trigger and the HPA it creates, with their defaults (module docstring)."""

    list_length: int = 5
    max_replicas: int = 100
    name: str = "keda-hpa"
    interval: float = HPA_SYNC_S
    last_active: float | None = None
    ticks: int = 0
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_ups: list[tuple[float, int]] = field(default_factory=list)

    def step(self, now: float, observation: QueueObservation, current: int, ready: int | None) -> int:
        metric = observation.waiting
        self.ticks += 1
        keda_poll = self.ticks % round(KEDA_POLLING_S / self.interval) == 1
        if metric > KEDA_ACTIVATION:
            self.last_active = now
        if keda_poll:
            if current == 0 and metric > KEDA_ACTIVATION:
                return 1
            idle_for = math.inf if self.last_active is None else now - self.last_active
            if current > 0 and idle_for >= KEDA_COOLDOWN_S:
                self.recommendations.clear()
                return 0
        if current == 0:
            return 0  # the HPA does not scale a workload at zero
        return self._hpa(now, metric, current)

    def _hpa(self, now: float, metric: int, current: int) -> int:
        ratio = metric / (self.list_length * current)
        raw = current if abs(ratio - 1) <= HPA_TOLERANCE else math.ceil(metric / self.list_length)
        raw = min(max(raw, 1), self.max_replicas)
        self.recommendations = [(t, r) for t, r in self.recommendations if now - t < HPA_DOWN_WINDOW_S]
        self.recommendations.append((now, raw))
        desired = raw
        if raw < current:
            desired = min(current, max(r for _, r in self.recommendations))
        elif raw > current:
            self.scale_ups = [(t, n) for t, n in self.scale_ups if now - t < HPA_PERIOD_S]
            start = current - sum(n for _, n in self.scale_ups)
            limit = max(start + HPA_UP_PODS, math.ceil(start * (1 + HPA_UP_PERCENT / 100)))
            desired = min(raw, max(limit, current))
            if desired > current:
                self.scale_ups.append((now, desired - current))
        return desired
