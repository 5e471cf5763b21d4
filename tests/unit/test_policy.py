"""The scaling policy, case by case (the properties are in test_policy_properties.py).

Each ``CASES`` row: spec overrides, the observation, current replicas, remembered state ->
expected desired replicas, direction and a fragment of the reason.

| group          | what the rows show                                                         |
| -------------- | -------------------------------------------------------------------------- |
| activation     | wake from zero within one poll, and only past activation.waiting           |
| clamp          | [minReplicas, maxReplicas] always wins                                     |
| step limits    | scale-up per period (pods or percent), scale-down pods per period          |
| window         | the highest need in stabilizationWindowSeconds bounds a scale-down         |
| hysteresis     | no scale-down while the peak fits the fleet within the tolerance           |
| cooldown       | the last replica goes only after cooldownSeconds idle                      |
| in flight      | never below ceil(active / concurrency), never zero while jobs run          |
| fallback       | keep, then fallback.replicas after failureThreshold failed probes          |
| pause          | current replicas, whatever the queue says                                  |
| capacity       | (lambda + B/T) / mu with measured rates; one slot per job before mu known |
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from jobqueue_operator import policy, spec

from worker_runtime.observation import QueueObservation, WorkerHeartbeat

NOW = 10_000.0
CONCURRENCY = 10


def scaling(**overrides: Any) -> spec.ScalingSpec:
    data: dict[str, Any] = {"maxReplicas": 20, "targets": {"backlogPerReplica": 50}}
    data.update(overrides)
    return spec.ScalingSpec.model_validate(data)


def obs(**fields: Any) -> QueueObservation:
    return QueueObservation(queue="q", observed_at_ms=int(NOW * 1000), **fields)


BUSY = policy.PolicyState(idle_since=None)
IDLE_30S = policy.PolicyState(idle_since=NOW - 30)
IDLE_130S = policy.PolicyState(idle_since=NOW - 130)
UP = policy.Direction.UP
DOWN = policy.Direction.DOWN
NONE = policy.Direction.NONE
AGE = {"maxOldestAge": 30}

CASES: list[
    tuple[str, dict[str, Any], dict[str, Any], int, policy.PolicyState, int, policy.Direction, str]
] = [
    # activation
    ("activate on one job", {}, {"waiting": 1}, 0, BUSY, 1, UP, "activated from zero"),
    (
        "below activation",
        {"activation": {"waiting": 5}},
        {"waiting": 3},
        0,
        BUSY,
        0,
        NONE,
        "3 ready < activation 5",
    ),
    ("due delayed job wakes", {}, {"oldest_ready_age_s": 4.0}, 0, BUSY, 1, UP, "activated"),
    (
        "aging job wakes below activation",
        {"activation": {"waiting": 5}, "targets": AGE},
        {"waiting": 2, "oldest_ready_age_s": 16.0},
        0,
        BUSY,
        1,
        UP,
        "activated",
    ),
    ("burst from zero is step-limited", {}, {"waiting": 5000}, 0, BUSY, 4, UP, "scale-up limited to 4"),
    ("idle at zero stays", {}, {}, 0, BUSY, 0, NONE, "0 ready < activation 1"),
    # clamp
    ("max clamps", {}, {"waiting": 5000}, 18, BUSY, 20, UP, "backlog 5000"),
    ("min holds an idle queue", {"minReplicas": 3}, {}, 3, IDLE_130S, 3, NONE, "scale to zero"),
    ("min lifts from zero", {"minReplicas": 2}, {}, 0, BUSY, 2, UP, "idle at zero"),
    # step limits
    ("up by pods", {}, {"waiting": 1000}, 3, BUSY, 7, UP, "limited to 7"),
    ("up by percent", {}, {"waiting": 1000}, 6, BUSY, 12, UP, "limited to 12"),
    (
        "ups within the period count",
        {},
        {"waiting": 1000},
        8,
        policy.PolicyState(scale_events=((NOW - 5, 4),)),
        8,
        NONE,
        "limited to 8",
    ),
    (
        "ups before the period do not",
        {},
        {"waiting": 1000},
        8,
        policy.PolicyState(scale_events=((NOW - 16, 4),)),
        16,
        UP,
        "limited to 16",
    ),
    (
        "down by pods",
        {"scaleDown": {"maxStepPerPeriod": 5}},
        {"waiting": 100},
        20,
        BUSY,
        15,
        DOWN,
        "limited to 15",
    ),
    ("down unlimited", {}, {"waiting": 100}, 20, BUSY, 2, DOWN, "scale down to peak need 2.0"),
    # stabilization window
    (
        "peak in window holds",
        {},
        {"waiting": 100},
        10,
        policy.PolicyState(recommendations=((NOW - 30, 10.0),)),
        10,
        NONE,
        "peak need 10.0",
    ),
    (
        "peak out of window",
        {},
        {"waiting": 100},
        10,
        policy.PolicyState(recommendations=((NOW - 61, 10.0),)),
        2,
        DOWN,
        "scale down",
    ),
    (
        "down to window peak",
        {},
        {"waiting": 100},
        10,
        policy.PolicyState(recommendations=((NOW - 50, 4.5), (NOW - 70, 10.0))),
        5,
        DOWN,
        "peak need 4.5",
    ),
    # hysteresis: shrink only if ceil(peak / (1 - 0.35)) < current
    ("7 of 10 holds", {}, {"waiting": 350}, 10, BUSY, 10, NONE, "within tolerance"),
    ("6 of 10 holds", {}, {"waiting": 300}, 10, BUSY, 10, NONE, "within tolerance"),
    ("5.5 of 10 shrinks", {}, {"waiting": 275}, 10, BUSY, 6, DOWN, "scale down"),
    ("no tolerance", {"scaleDown": {"tolerance": 0}}, {"waiting": 450}, 10, BUSY, 9, DOWN, "scale down"),
    # cooldown
    ("cooldown keeps one", {}, {}, 1, IDLE_30S, 1, NONE, ""),
    ("cooldown keeps one from three", {}, {}, 3, IDLE_30S, 1, DOWN, "cooldown: idle 30s of 120s"),
    ("cooled down", {}, {}, 1, IDLE_130S, 0, DOWN, "idle for 130s"),
    ("short cooldown", {"cooldownSeconds": 10}, {}, 2, IDLE_30S, 0, DOWN, "scale to zero"),
    # in flight
    ("in-flight floor", {}, {"active": 25}, 10, BUSY, 3, DOWN, "in flight"),
    ("one job in flight", {"cooldownSeconds": 0}, {"active": 1}, 1, BUSY, 1, NONE, "1 jobs in flight need 1"),
    ("floor beats step limit", {}, {"active": 150}, 1, BUSY, 15, UP, "150 jobs in flight"),
    ("max beats floor", {"maxReplicas": 5}, {"active": 150}, 5, BUSY, 5, NONE, "in flight"),
    # pause
    ("paused keeps even out of range", {"paused": True}, {"waiting": 5000}, 50, BUSY, 50, NONE, "paused"),
]


@pytest.mark.parametrize(
    ("overrides", "fields", "current", "state", "desired", "direction", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    overrides: dict[str, Any],
    fields: dict[str, Any],
    current: int,
    state: policy.PolicyState,
    desired: int,
    direction: policy.Direction,
    reason: str,
) -> None:
    s = scaling(**overrides)
    d = policy.decide(s, obs(**fields), current, state, NOW, paused=s.paused, concurrency=CONCURRENCY)
    assert (d.desired, d.direction) == (desired, direction), d.reason
    assert reason in d.reason


FALLBACK_CASES = [
    ("first failure keeps", {}, 0, 4, 4, "probe failed (1/3): keeping 4"),
    ("threshold reached without replicas keeps", {}, 2, 4, 4, "no fallback.replicas"),
    ("threshold reached goes to fallback", {"fallback": {"replicas": 6}}, 2, 4, 6, "fallback to 6 replicas"),
    ("long outage stays at fallback", {"fallback": {"replicas": 6}}, 9, 6, 6, "10 times"),
    ("keeping is clamped", {"minReplicas": 2}, 0, 0, 2, "keeping 2"),
]


@pytest.mark.parametrize(
    ("overrides", "failures", "current", "desired", "reason"),
    [c[1:] for c in FALLBACK_CASES],
    ids=[c[0] for c in FALLBACK_CASES],
)
def test_probe_failures(
    overrides: dict[str, Any], failures: int, current: int, desired: int, reason: str
) -> None:
    state = policy.PolicyState(failures=failures)
    d = policy.decide(scaling(**overrides), None, current, state, NOW, paused=False, concurrency=CONCURRENCY)
    assert d.desired == desired
    assert reason in d.reason
    assert d.state.failures == failures + 1


def test_a_successful_probe_resets_the_failure_count() -> None:
    d = policy.decide(
        scaling(), obs(waiting=10), 1, policy.PolicyState(failures=7), NOW, paused=False, concurrency=10
    )
    assert d.state.failures == 0


def test_paused_with_a_failed_probe_keeps_current() -> None:
    d = policy.decide(scaling(), None, 3, policy.PolicyState(), NOW, paused=True, concurrency=10)
    assert (d.desired, d.reason) == (3, "paused")


CAPACITY_CASES = [
    # lambda, mu, waiting, active, target seconds, expected replicas = ceil((lambda + waiting / T) / mu)
    (12.0, 2.0, 300, 0, 30, 11),
    (12.0, 2.0, 0, 40, 30, 6),
    (0.5, 0.1, 30, 0, 60, 10),
    (100.0, 4.0, 6000, 0, 30, 75),
    (0.0, 1.0, 10, 0, 30, 1),
]


@pytest.mark.parametrize(("arrival", "service", "waiting", "active", "target", "expected"), CAPACITY_CASES)
def test_capacity_model(
    arrival: float, service: float, waiting: int, active: int, target: int, expected: int
) -> None:
    s = scaling(maxReplicas=100, targets={"maxOldestAge": target}, scaleUp={"maxStepPerPeriod": 100})
    state = policy.PolicyState(arrival_rate=arrival, service_rate=service)
    observation = obs(waiting=waiting, active=active, oldest_ready_age_s=5.0 if waiting else 0.0)
    d = policy.decide(s, observation, 1, state, NOW, paused=False, concurrency=1000)
    assert d.recommended == expected
    assert d.desired == expected
    assert f"λ={arrival:.1f}/s" in d.reason and f"backlog {waiting}" in d.reason


def test_age_target_reports_a_late_job() -> None:
    s = scaling(targets={"maxOldestAge": 30})
    state = policy.PolicyState(arrival_rate=12.3, service_rate=2.0)
    d = policy.decide(
        s, obs(waiting=300, oldest_ready_age_s=42.0), 5, state, NOW, paused=False, concurrency=10
    )
    assert d.reason.startswith("oldest age 42s over target 30s: need 12 replicas for λ=12.3/s, backlog 300")


def test_unknown_service_rate_gives_every_job_a_slot() -> None:
    s = scaling(targets={"maxOldestAge": 30}, scaleUp={"maxStepPerPeriod": 100})
    d = policy.decide(
        s, obs(waiting=95, active=5), 1, policy.PolicyState(), NOW, paused=False, concurrency=10
    )
    assert d.desired == 10
    assert "service rate not measured yet" in d.reason


def test_largest_target_wins() -> None:
    s = scaling(targets={"maxOldestAge": 30, "backlogPerReplica": 10}, scaleUp={"maxStepPerPeriod": 100})
    state = policy.PolicyState(arrival_rate=1.0, service_rate=1.0)
    d = policy.decide(s, obs(waiting=200), 1, state, NOW, paused=False, concurrency=10)
    assert d.desired == 20  # backlog: 200 / 10 beats (1 + 200 / 30) / 1 = 7.7
    assert d.reason.startswith("backlog 200")


def _counters(t: float, enqueued: int, finished: int, waiting: int, **extra: Any) -> QueueObservation:
    return QueueObservation(
        queue="q",
        observed_at_ms=int(t * 1000),
        waiting=waiting,
        enqueued_total=enqueued,
        completed_total=finished,
        **extra,
    )


def test_measure_rates_from_counter_deltas() -> None:
    state = policy.measure(policy.PolicyState(), _counters(0, 100, 50, 20), 2, 0.0)
    assert state.arrival_rate is None and state.service_rate is None
    state = policy.measure(state, _counters(2, 124, 58, 20), 2, 2.0)
    assert state.arrival_rate == pytest.approx(12.0)  # 24 enqueued in 2 s
    assert state.service_rate == pytest.approx(2.0)  # 8 finished in 2 s by 2 replicas
    assert state.throughput == pytest.approx(4.0)


def test_rates_are_smoothed() -> None:
    state = policy.PolicyState(observed_at_ms=0, arrival_rate=10.0, enqueued_total=0)
    state = policy.measure(state, _counters(30, 600, 0, 0), 1, 30.0)
    alpha = 1 - math.exp(-30 / policy.RATE_TIME_CONSTANT_S)
    assert state.arrival_rate == pytest.approx(10 + alpha * (20 - 10))


def test_service_rate_only_from_a_busy_fleet() -> None:
    state = policy.measure(policy.PolicyState(), _counters(0, 0, 0, 0), 2, 0.0)
    state = policy.measure(state, _counters(2, 10, 10, 5), 2, 2.0)
    assert state.service_rate is None  # nothing was waiting at the start: the fleet was not saturated


def test_service_rate_uses_live_heartbeats() -> None:
    workers = tuple(
        WorkerHeartbeat(worker_id=f"w{i}", pod=f"pod-{i // 2}", inflight=1, concurrency=1, seen_ms=0)
        for i in range(8)
    )
    state = policy.measure(policy.PolicyState(), _counters(0, 0, 0, 5), 10, 0.0)
    state = policy.measure(state, _counters(2, 0, 16, 5, workers=workers), 10, 2.0)
    assert policy.running_replicas(_counters(2, 0, 16, 5, workers=workers), 10) == 4
    assert state.service_rate == pytest.approx(2.0)  # 16 in 2 s over 4 live pods, not the 10 asked for


def test_counter_reset_is_skipped() -> None:
    state = policy.PolicyState(observed_at_ms=0, enqueued_total=1000, arrival_rate=3.0)
    state = policy.measure(state, _counters(2, 10, 0, 0), 1, 2.0)
    assert state.arrival_rate == 3.0


def test_idle_time_starts_at_the_first_idle_poll_and_resets_on_work() -> None:
    state = policy.measure(policy.PolicyState(), _counters(0, 5, 5, 0), 1, 100.0)
    assert state.idle_since == 100.0
    state = policy.measure(state, _counters(2, 5, 5, 0), 1, 102.0)
    assert state.idle_since == 100.0
    state = policy.measure(state, _counters(4, 6, 6, 0), 1, 104.0)  # a job came and went between polls
    assert state.idle_since is None


@pytest.mark.parametrize(("step", "longest"), [(2, 1), (-2, policy._WINDOW_BUCKETS + 1)])
def test_window_history_stays_short(step: int, longest: int) -> None:
    s = scaling(scaleDown={"stabilizationWindowSeconds": 3600})
    state = policy.PolicyState()
    for i in range(3000):
        d = policy.decide(s, obs(waiting=10_000 + step * i), 20, state, NOW + i, paused=False, concurrency=10)
        state = d.state
    assert len(state.recommendations) <= longest
    assert state.recommendations[0][1] == pytest.approx(max(10_000, 10_000 + step * 2999) / 50)


def test_state_round_trips_through_json() -> None:
    state = policy.PolicyState(
        observed_at_ms=123,
        enqueued_total=5,
        finished_total=4,
        waiting=1,
        arrival_rate=1.5,
        service_rate=0.25,
        throughput=1.0,
        idle_since=99.5,
        failures=2,
        recommendations=((1.0, 3.5), (2.0, 2.0)),
        scale_events=((1.0, 3), (2.0, -1)),
    )
    stored = json.loads(json.dumps(state.to_dict()))
    assert policy.PolicyState.from_dict(stored) == state


@pytest.mark.parametrize(
    "stored",
    [None, "garbage", {}, {"failures": "x", "recommendations": [[1, "a"], "b", [2]], "arrivalRate": True}],
)
def test_unreadable_state_falls_back_to_defaults(stored: Any) -> None:
    state = policy.PolicyState.from_dict(stored)
    assert state.failures == 0 and state.recommendations == () and state.arrival_rate is None


def test_policy_imports_nothing_that_does_io() -> None:
    import ast
    from pathlib import Path

    assert policy.__file__ is not None
    tree = ast.parse(Path(policy.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {
        "__future__",
        "math",
        "collections.abc",
        "dataclasses",
        "enum",
        "typing",
        "jobqueue_operator",
        "worker_runtime.observation",
    }
    assert imported <= allowed, imported - allowed
