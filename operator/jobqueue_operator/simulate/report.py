"""Figures of a simulated run: what a platform team wants to know before deploying a scaling spec.

| figure               | definition (over the measured window [start, end))                             |
| -------------------- | ------------------------------------------------------------------------------ |
| seconds over target  | time during which some ready job had waited longer than maxOldestAge          |
| wait p50 / p99       | of the jobs that arrived in the window, from ready to started                 |
| peak / mean replicas | pods that exist (starting, serving or draining); mean = replica-seconds / time |
| replica-seconds      | the integral of existing pods: what the cluster bills                          |
| lower bound          | the work itself: the service seconds of the window's jobs / slots per pod,    |
|                      | a fluid fleet that knows the whole trace, starts instantly and is never idle  |
| reversals            | changes of direction between consecutive scale changes (up then down, ...)     |
| interrupted          | jobs killed because their pod was removed and did not drain within its grace  |
| cold starts          | pods created                                                                   |
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jobqueue_operator.simulate import model


@dataclass(frozen=True)
class Summary:
    """One run's figures (see the module docstring)."""

    trace: str
    autoscaler: str
    seconds_over_target: float
    wait_p50_s: float
    wait_p99_s: float
    peak_replicas: int
    mean_replicas: float
    replica_seconds: float
    lower_bound: float
    reversals: int
    interrupted: int
    cold_starts: int
    jobs: int

    @property
    def cost_ratio(self) -> float:
        return self.replica_seconds / self.lower_bound if self.lower_bound > 0 else math.inf


def summarize(run: model.Run) -> Summary:
    start, end = run.workload.start, run.workload.end
    arrivals = run.workload.arrivals
    first = bisect.bisect_left(arrivals, start)
    last = bisect.bisect_left(arrivals, end)
    waits = sorted(run.waits[first:last])
    work = math.fsum(run.workload.durations[first:last])
    replica_seconds = math.fsum(_overlap(p.created, _end_of(p, run.horizon), start, end) for p in run.pods)
    return Summary(
        trace=run.workload.name,
        autoscaler=run.autoscaler,
        seconds_over_target=union_length(run.late, start, end),
        wait_p50_s=quantile(waits, 0.50),
        wait_p99_s=quantile(waits, 0.99),
        peak_replicas=peak_pods(run.pods, run.horizon, start, end),
        mean_replicas=replica_seconds / (end - start) if end > start else 0.0,
        replica_seconds=replica_seconds,
        lower_bound=work / run.cluster.concurrency,
        reversals=reversals(d for d in run.decisions if start <= d[0] < end),
        interrupted=run.interrupted,
        cold_starts=sum(1 for p in run.pods if start <= p.created < end),
        jobs=last - first,
    )


def total(summaries: Sequence[Summary], trace: str = "total") -> Summary:
    """The sum of several runs' figures (ratios are of the sums; waits are the worst run's)."""
    return Summary(
        trace=trace,
        autoscaler=summaries[0].autoscaler if summaries else "",
        seconds_over_target=math.fsum(s.seconds_over_target for s in summaries),
        wait_p50_s=max((s.wait_p50_s for s in summaries), default=0.0),
        wait_p99_s=max((s.wait_p99_s for s in summaries), default=0.0),
        peak_replicas=max((s.peak_replicas for s in summaries), default=0),
        mean_replicas=math.fsum(s.mean_replicas for s in summaries) / max(1, len(summaries)),
        replica_seconds=math.fsum(s.replica_seconds for s in summaries),
        lower_bound=math.fsum(s.lower_bound for s in summaries),
        reversals=sum(s.reversals for s in summaries),
        interrupted=sum(s.interrupted for s in summaries),
        cold_starts=sum(s.cold_starts for s in summaries),
        jobs=sum(s.jobs for s in summaries),
    )


def reversals(decisions: Iterable[tuple[float, int, int]]) -> int:
    """Direction changes between consecutive scale changes ``(time, before, after)``."""
    signs = [1 if after > before else -1 for _, before, after in decisions if after != before]
    return sum(1 for a, b in itertools.pairwise(signs) if a != b)


def union_length(intervals: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Length of the union of ``intervals`` clipped to [start, end)."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end)
    covered, reach = 0.0, -math.inf
    for a, b in clipped:
        if b <= reach:
            continue
        covered += b - max(a, reach)
        reach = b
    return covered


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank); 0 for none."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def peak_pods(pods: Iterable[model.Pod], horizon: float, start: float, end: float) -> int:
    changes: list[tuple[float, int]] = []
    for pod in pods:
        a, b = max(pod.created, start), min(_end_of(pod, horizon), end)
        if b > a:
            changes += [(a, 1), (b, -1)]
    peak = count = 0
    for _, delta in sorted(changes, key=lambda c: (c[0], c[1])):
        count += delta
        peak = max(peak, count)
    return peak


def _end_of(pod: model.Pod, horizon: float) -> float:
    return pod.gone_at if pod.gone_at is not None else horizon


def _overlap(a: float, b: float, start: float, end: float) -> float:
    return max(0.0, min(b, end) - max(a, start))
