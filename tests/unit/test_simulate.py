"""The simulator: its model, its figures, its traces, and a short run of each scaler.

| part      | cases                                                                              |
| --------- | ---------------------------------------------------------------------------------- |
| model     | jobs are served first come first served over free slots; pods start late; a      |
|           | removed pod drains; one that outlives its grace has its jobs killed and requeued |
| report    | union of late intervals, reversals, quantiles, the lower bound                    |
| traces    | every shape generates; job-time distributions; CSV of timestamps (header, ISO     |
|           | 8601), counter CSV with a reset, Prometheus JSON; bad input says why              |
| smoke     | one short shape, one seed: the policy holds the target, KEDA + HPA does worse     |
"""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass, field

import pytest
from jobqueue_operator import spec
from jobqueue_operator.simulate import autoscalers, model, report, scenario, traces

from worker_runtime.observation import QueueObservation


@dataclass
class Script:
    """An autoscaler that asks for a scripted count from given times on, and records what it saw."""

    plan: list[tuple[float, int]]
    name: str = "script"
    interval: float = 1.0
    seen: list[tuple[float, QueueObservation, int, int | None]] = field(default_factory=list)

    def step(self, now: float, observation: QueueObservation, current: int, ready: int | None) -> int:
        self.seen.append((now, observation, current, ready))
        due = [count for at, count in self.plan if at <= now]
        return due[-1] if due else current


def load(arrivals: list[float], durations: list[float], end: float = 100.0) -> model.Workload:
    return model.Workload("test", arrivals, durations, 0.0, end)


def test_jobs_are_served_in_order_over_free_slots() -> None:
    cluster = model.Cluster(concurrency=2, startup_s=0.0)
    run = model.Model(
        load([0.5, 0.6, 0.7], [10.0, 10.0, 10.0]), cluster, Script([]), seed=1, initial_replicas=1
    ).run()
    assert run.waits == pytest.approx([0.0, 0.0, 10.5 - 0.7])  # the third waits for the first slot


def test_pods_serve_once_started_and_cost_from_the_ask() -> None:
    cluster = model.Cluster(concurrency=1, startup_s=10.0, startup_jitter=0.0)
    run = model.Model(load([0.5], [1.0], end=50.0), cluster, Script([(1.0, 1)]), seed=1, target_s=5).run()
    assert run.waits[0] == pytest.approx(10.5)  # asked at 1 s, ready at 11 s
    assert run.late == [(5.5, 11.0)]
    pod = run.pods[0]
    assert (pod.created, pod.ready_at) == (1.0, 11.0) and pod.gone_at is None


def test_a_removed_pod_drains_and_one_past_its_grace_is_killed() -> None:
    cluster = model.Cluster(concurrency=1, startup_s=0.0, grace_s=5.0)
    scaler = Script([(1.0, 2), (2.0, 0)])
    run = model.Model(load([1.2, 1.3], [2.0, 30.0], end=60.0), cluster, scaler, seed=1).run()
    short, long = sorted(run.pods, key=lambda p: p.gone_at or math.inf)
    assert short.gone_at == pytest.approx(3.2)  # drained: its job finished
    assert long.gone_at == pytest.approx(7.0)  # killed at the end of its 5 s grace
    assert run.interrupted == 1


def test_the_autoscaler_sees_heartbeats_of_ready_pods_only() -> None:
    cluster = model.Cluster(concurrency=3, startup_s=5.0, startup_jitter=0.0)
    scaler = Script([(1.0, 2)])
    model.Model(load([], [], end=10.0), cluster, scaler, seed=1).run()
    seen = {round(now): (len(obs.workers), current, ready) for now, obs, current, ready in scaler.seen}
    assert seen[3] == (0, 2, None) and seen[7] == (2, 2, None)
    explicit = Script([(1.0, 2)])
    model.Model(
        load([], [], end=10.0), model.Cluster(3, 5.0, 0.0, explicit_ready=True), explicit, seed=1
    ).run()
    assert {round(now): ready for now, _, _, ready in explicit.seen}[7] == 2


def test_union_reversals_and_quantiles() -> None:
    assert report.union_length([(0, 5), (3, 8), (10, 12)], 1, 11) == pytest.approx(8.0)
    assert report.reversals([(0, 1, 3), (1, 3, 5), (2, 5, 2), (3, 2, 4), (4, 4, 4)]) == 2
    assert report.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0 and report.quantile([], 0.99) == 0.0


def test_the_lower_bound_is_the_work_over_the_slots() -> None:
    run = model.Model(load([1.0, 2.0], [4.0, 6.0]), model.Cluster(2, 0.0), Script([(0.0, 1)]), seed=1).run()
    assert report.summarize(run).lower_bound == pytest.approx(5.0)


@pytest.mark.parametrize("name", list(traces.SHAPES))
def test_every_shape_generates(name: str) -> None:
    workload = traces.shape(name, 2.0, traces.JobTimes("constant", 1.0), seed=3)
    assert workload.arrivals == sorted(workload.arrivals) and workload.start == traces.WARMUP_S
    assert len(workload.durations) == len(workload.arrivals) > 0 and workload.end > workload.start
    again = traces.shape(name, 2.0, traces.JobTimes("constant", 1.0), seed=3)
    assert again.arrivals == workload.arrivals


@pytest.mark.parametrize(
    ("text", "kind", "mean"),
    [("lognormal:2", "lognormal", 2.0), ("lognormal:2:0.5", "lognormal", 2.0), ("exp:3", "exponential", 3.0)],
)
def test_job_times(text: str, kind: str, mean: float) -> None:
    times = traces.parse_job_times(text)
    assert times.kind == kind
    sample = times.sampler(random.Random(1))
    assert statistics.fmean(sample() for _ in range(20_000)) == pytest.approx(mean, rel=0.05)


@pytest.mark.parametrize("text", ["", "normal:2", "lognormal", "exp:-1", "const:x", "exp:1:2"])
def test_bad_job_times_say_what_is_expected(text: str) -> None:
    with pytest.raises(traces.TraceError, match="expected lognormal:MEAN"):
        traces.parse_job_times(text)


CONSTANT = traces.JobTimes("constant", 1.0)


def test_a_csv_of_timestamps() -> None:
    text = "enqueued_at\n1700000010.5\n1700000000\n2023-11-14T22:13:30Z\n"
    workload = traces.recorded("t.csv", text, CONSTANT, seed=1)
    assert workload.arrivals == [0.0, 10.0, 10.5]


def test_counter_samples_spread_their_increase_and_survive_a_reset() -> None:
    text = "0,100\n10,110\n20,5\n"
    workload = traces.recorded("c.csv", text, CONSTANT, seed=1)
    assert len(workload.arrivals) == 15  # 10, then a reset to 5
    assert all(0 <= t <= 20 for t in workload.arrivals) and sum(t < 10 for t in workload.arrivals) == 10


def test_a_prometheus_query_range_answer() -> None:
    values = [[1700000000 + 15 * i, str(20 * i)] for i in range(5)]
    series = [{"metric": {"pod": "a"}, "values": values}, {"metric": {"pod": "b"}, "values": values}]
    text = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": series}})
    workload = traces.recorded("p.json", text, CONSTANT, seed=1)
    assert len(workload.arrivals) == 160 and workload.end <= 60


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("t\n1\nx\n", "line 3: not a number or timestamp"),
        ("1,2,3\n", "expected one column"),
        ('{"data": {}}', "not a Prometheus query_range answer"),
        ("0,5\n", "at least two samples"),
    ],
)
def test_bad_traces_say_why(text: str, message: str) -> None:
    with pytest.raises(traces.TraceError, match=message):
        traces.recorded("bad", text, CONSTANT, seed=1)


def test_smoke_the_policy_holds_the_target_where_keda_does_not() -> None:
    scaling = spec.ScalingSpec.model_validate({"maxReplicas": 20, "targets": {"maxOldestAge": 30}})
    plan = scenario.Scenario(
        scaling=scaling,
        concurrency=4,
        grace_s=330.0,
        job_timeout_s=300.0,
        startup_s=10.0,
        job_times=traces.parse_job_times("lognormal:2:1"),
        seed=1,
        base_rate=4.0,
    )
    workload = plan.shape("spike")
    ours, keda = scenario.run_policy(plan, workload), scenario.run_keda(plan, workload)
    assert ours.summary.seconds_over_target == 0 and ours.summary.interrupted == 0
    assert ours.summary.cost_ratio < keda.summary.cost_ratio
    assert keda.summary.seconds_over_target > 0
    assert sum(ours.kinds.values()) == len(ours.run.samples)


def test_keda_emulation_follows_its_documented_defaults() -> None:
    hpa = autoscalers.KedaHpa(list_length=5, max_replicas=100)
    observation = QueueObservation(queue="q", observed_at_ms=0, waiting=50)
    assert hpa.step(15.0, observation, 0, None) == 1  # KEDA activates from zero at its poll
    assert hpa.step(30.0, observation, 1, None) == 5  # then the HPA: max(4 pods, 100%) per 15 s
    assert hpa.step(45.0, observation, 5, None) == 10  # 50 / listLength 5
    empty = QueueObservation(queue="q", observed_at_ms=0, waiting=0)
    assert hpa.step(60.0, empty, 10, None) == 10  # the 300 s scale-down window holds the peak
    assert hpa.step(75.0, empty, 10, None) == 10
    assert hpa.step(345.0, empty, 10, None) == 1  # the window has passed: the HPA's minimum
    assert hpa.step(360.0, empty, 1, None) == 0  # KEDA's cooldownPeriod: 300 s without work
