"""A discrete-event model of one queue, its worker pods and an autoscaler. Pure: no I/O, no clock.

What is modelled (docs/scaling.md, "The simulator", says why each choice is defensible):

| part        | model                                                                               |
| ----------- | ----------------------------------------------------------------------------------- |
| arrivals    | the workload's timestamps, as given (a synthetic shape or a recorded trace)        |
| jobs        | the workload's service times; each job holds one slot of one pod while it runs     |
| pods        | ``concurrency`` slots; ready ``startup_s`` x U(0.8, 1.2) after they are asked for  |
| claims      | first come, first served; a job goes to the slot that has been free the longest   |
| scale-up    | new pods are created at once; they serve once ready                                 |
| scale-down  | starting pods go first (newest first), then the pods with the fewest jobs running; |
|             | a removed pod stops claiming and finishes its jobs (drain); jobs still running     |
|             | after ``grace_s`` are killed ("interrupted") and go back to the front of the queue |
| polls       | every ``autoscaler.interval`` seconds the autoscaler sees a ``QueueObservation``  |
|             | (depths, oldest age, counters, one heartbeat per ready or draining pod)            |

A pod costs from the moment it is asked for until its last job ended (or it was killed).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker_runtime.observation import QueueObservation, WorkerHeartbeat

STARTING, READY, DRAINING, GONE = 0, 1, 2, 3
_DONE, _READY, _GRACE, _POLL = 0, 1, 2, 3
# Seconds the model runs past the workload's end, so jobs that arrived late still get served.
TAIL_SECONDS = 300.0


@dataclass(frozen=True)
class Workload:
    """Arrival times (sorted, seconds) and each job's service time; metrics cover [start, end)."""

    name: str
    arrivals: Sequence[float]
    durations: Sequence[float]
    start: float
    end: float


@dataclass(frozen=True)
class Cluster:
    """How pods behave: start-up time, slots, drain budget, and which readiness signal is shown."""

    concurrency: int
    startup_s: float = 10.0
    startup_jitter: float = 0.2
    grace_s: float = 330.0
    # True: the autoscaler is told the ready count (dev mode, a future Deployment readyReplicas);
    # False: it must infer readiness from heartbeats, as the operator does today.
    explicit_ready: bool = False


class Autoscaler(Protocol):
    """What the model drives: ``step`` is called every ``interval`` seconds and returns replicas."""

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...

    def step(self, now: float, observation: QueueObservation, current: int, ready: int | None) -> int: ...


@dataclass
class Pod:
    index: int
    created: float
    ready_at: float
    state: int = STARTING
    inflight: int = 0
    gone_at: float | None = None
    jobs: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"pod-{self.index}"


@dataclass(frozen=True)
class Sample:
    """What one poll saw and decided (the timeline of a run)."""

    t: float
    arrived: int
    waiting: int
    active: int
    oldest_age_s: float
    pods: int
    ready: int
    desired: int


@dataclass
class Run:
    """Everything a run produced; ``report.summarize`` turns it into figures."""

    workload: Workload
    cluster: Cluster
    autoscaler: str
    target_s: float | None
    waits: list[float]
    late: list[tuple[float, float]]
    pods: list[Pod]
    samples: list[Sample]
    decisions: list[tuple[float, int, int]]
    interrupted: int
    horizon: float


class Model:
    """One run of a workload on a cluster under an autoscaler; call ``run()`` once."""

    def __init__(
        self,
        workload: Workload,
        cluster: Cluster,
        autoscaler: Autoscaler,
        *,
        seed: int,
        target_s: float | None = None,
        initial_replicas: int = 0,
    ) -> None:
        self.workload = workload
        self.cluster = cluster
        self.autoscaler = autoscaler
        self.target_s = target_s
        self.rng = random.Random(f"pods-{seed}")
        self.pods: list[Pod] = []
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.queue: deque[int] = deque()
        self.ready_at = [float(t) for t in workload.arrivals]
        self.free: deque[Pod] = deque()
        self.live = 0  # pods not gone (what is paid for)
        self.asked = 0  # pods starting or ready (the Deployment's replicas)
        self.enqueued = 0
        self.completed = 0
        self.interrupted = 0
        self.waits = [math.nan] * len(workload.arrivals)
        self.samples: list[Sample] = []
        self.decisions: list[tuple[float, int, int]] = []
        self.now = 0.0
        self._arrived_since_poll = 0
        for _ in range(initial_replicas):
            self._create(0.0, ready=True)

    # ------------------------------------------------------------------ the loop

    def run(self) -> Run:
        arrivals = self.workload.arrivals
        count = len(arrivals)
        horizon = self.workload.end + TAIL_SECONDS
        self._push(self.autoscaler.interval, _POLL, 0, 0)
        heap = self.heap
        i = 0
        while True:
            next_arrival = arrivals[i] if i < count else math.inf
            if heap and heap[0][0] <= next_arrival:
                t, _, kind, a, b = heapq.heappop(heap)
                if t > horizon:
                    break
                self.now = t
                if kind == _DONE:
                    self._done(t, a, b)
                elif kind == _POLL:
                    self._poll(t)
                    self._push(t + self.autoscaler.interval, _POLL, 0, 0)
                elif kind == _READY:
                    self._ready(t, a)
                else:
                    self._grace(t, a)
            else:
                if next_arrival > horizon:
                    break
                self.now = next_arrival
                self._arrive(next_arrival, i)
                i += 1
        self.horizon = horizon
        return self._result(horizon)

    def _push(self, t: float, kind: int, a: int, b: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, a, b))

    # ------------------------------------------------------------------ jobs

    def _arrive(self, t: float, job: int) -> None:
        self.enqueued += 1
        self._arrived_since_poll += 1
        if not self.queue:
            pod = self._free_slot()
            if pod is not None:
                self._start(t, pod, job)
                return
        self.queue.append(job)

    def _free_slot(self) -> Pod | None:
        free = self.free
        while free:
            pod = free.popleft()
            if pod.state == READY:
                return pod
        return None

    def _start(self, t: float, pod: Pod, job: int) -> None:
        self.waits[job] = t - self.ready_at[job]
        pod.inflight += 1
        pod.jobs.add(job)
        self._push(t + self.workload.durations[job], _DONE, pod.index, job)

    def _done(self, t: float, index: int, job: int) -> None:
        pod = self.pods[index]
        if job not in pod.jobs:
            return  # killed at the end of its pod's grace period
        pod.jobs.discard(job)
        pod.inflight -= 1
        self.completed += 1
        if pod.state == DRAINING:
            if pod.inflight == 0:
                self._gone(t, pod)
        elif self.queue:
            self._start(t, pod, self.queue.popleft())
        else:
            self.free.append(pod)

    # ------------------------------------------------------------------ pods

    def _create(self, t: float, *, ready: bool = False) -> None:
        jitter = self.cluster.startup_jitter
        startup = 0.0 if ready else self.cluster.startup_s * self.rng.uniform(1 - jitter, 1 + jitter)
        pod = Pod(len(self.pods), t, t + startup)
        self.pods.append(pod)
        self.live += 1
        self.asked += 1
        if ready:
            self._ready(t, pod.index)
        else:
            self._push(pod.ready_at, _READY, pod.index, 0)

    def _ready(self, t: float, index: int) -> None:
        pod = self.pods[index]
        if pod.state != STARTING:
            return
        pod.state = READY
        for _ in range(self.cluster.concurrency):
            if self.queue:
                self._start(t, pod, self.queue.popleft())
            else:
                self.free.append(pod)

    def _remove(self, t: float, pod: Pod) -> None:
        self.asked -= 1
        if pod.state == STARTING or pod.inflight == 0:
            self._gone(t, pod)
            return
        pod.state = DRAINING
        self._push(t + self.cluster.grace_s, _GRACE, pod.index, 0)

    def _grace(self, t: float, index: int) -> None:
        pod = self.pods[index]
        if pod.state != DRAINING:
            return
        self.interrupted += len(pod.jobs)
        for job in sorted(pod.jobs, reverse=True):
            # The lease is recovered and the job is ready again, at the front of the queue.
            self.ready_at[job] = t
            self.queue.appendleft(job)
        pod.jobs.clear()
        pod.inflight = 0
        self._gone(t, pod)
        while self.queue:
            slot = self._free_slot()
            if slot is None:
                break
            self._start(t, slot, self.queue.popleft())

    def _gone(self, t: float, pod: Pod) -> None:
        pod.state = GONE
        pod.gone_at = t
        self.live -= 1

    # ------------------------------------------------------------------ the autoscaler

    def observe(self, t: float) -> QueueObservation:
        seen_ms = int(t * 1000)
        concurrency = self.cluster.concurrency
        workers = tuple(
            WorkerHeartbeat(p.name, p.name, p.inflight, concurrency, seen_ms, p.state == DRAINING)
            for p in self.pods
            if p.state == READY or p.state == DRAINING
        )
        queue = self.queue
        oldest = t - self.ready_at[queue[0]] if queue else 0.0
        return QueueObservation(
            queue=self.workload.name,
            observed_at_ms=seen_ms,
            waiting=len(queue),
            active=sum(w.inflight for w in workers),
            oldest_ready_age_s=oldest,
            enqueued_total=self.enqueued,
            completed_total=self.completed,
            workers=workers,
        )

    def ready_count(self) -> int:
        return sum(1 for p in self.pods if p.state == READY)

    def _poll(self, t: float) -> None:
        observation = self.observe(t)
        ready = self.ready_count()
        current = self.asked
        desired = max(
            0, self.autoscaler.step(t, observation, current, ready if self.cluster.explicit_ready else None)
        )
        if desired > current:
            for _ in range(desired - current):
                self._create(t)
        elif desired < current:
            self._scale_down(t, current - desired)
        if desired != current:
            self.decisions.append((t, current, desired))
        self.samples.append(
            Sample(
                t,
                self._arrived_since_poll,
                observation.waiting,
                observation.active,
                observation.oldest_ready_age_s,
                self.live,
                ready,
                desired,
            )
        )
        self._arrived_since_poll = 0

    def _scale_down(self, t: float, surplus: int) -> None:
        # The ReplicaSet controller deletes pods that are not ready first, then (with the operator's
        # pod-deletion-cost, which is each pod's jobs in flight) the idlest ones.
        starting = [p for p in reversed(self.pods) if p.state == STARTING]
        ready = sorted((p for p in self.pods if p.state == READY), key=lambda p: (p.inflight, -p.index))
        for pod in (starting + ready)[:surplus]:
            self._remove(t, pod)

    # ------------------------------------------------------------------ result

    def _result(self, horizon: float) -> Run:
        target = self.target_s
        late: list[tuple[float, float]] = []
        if target is not None:
            for job, wait in enumerate(self.waits):
                if math.isnan(wait):
                    wait = horizon - self.ready_at[job]
                    self.waits[job] = wait
                if wait > target:
                    ready = self.ready_at[job]
                    late.append((ready + target, ready + wait))
        else:
            self.waits = [
                horizon - self.ready_at[j] if math.isnan(w) else w for j, w in enumerate(self.waits)
            ]
        return Run(
            workload=self.workload,
            cluster=self.cluster,
            autoscaler=self.autoscaler.name,
            target_s=target,
            waits=self.waits,
            late=late,
            pods=self.pods,
            samples=self.samples,
            decisions=self.decisions,
            interrupted=self.interrupted,
            horizon=horizon,
        )
