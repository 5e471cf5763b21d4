"""Properties of the scaling policy over generated specs, observations and states.

| property                                                   | holds for                              |
| ---------------------------------------------------------- | -------------------------------------- |
| minReplicas <= desired <= maxReplicas                      | every decision that is not paused      |
| paused -> desired == current                               | every paused decision                  |
| desired >= min(max, ceil(active / concurrency)), and >= 1  | every observation with active jobs     |
| at most one reversal of direction                          | constant load with +/-20% noisy waiting |
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobqueue_operator import policy, spec

from worker_runtime.observation import QueueObservation

NOW = 50_000.0
FAST = settings(max_examples=100, deadline=None)


@st.composite
def scaling_specs(draw: st.DrawFn, max_cap: int = 200) -> spec.ScalingSpec:
    low = draw(st.integers(0, 10))
    high = draw(st.integers(max(1, low), max(1, low) + max_cap))
    kinds = draw(st.sampled_from([("backlog",), ("age",), ("backlog", "age")]))
    targets: dict[str, int] = {}
    if "backlog" in kinds:
        targets["backlogPerReplica"] = draw(st.integers(1, 500))
    if "age" in kinds:
        targets["maxOldestAge"] = draw(st.integers(1, 600))
    data: dict[str, Any] = {
        "minReplicas": low,
        "maxReplicas": high,
        "targets": targets,
        "activation": {"waiting": draw(st.integers(1, 50))},
        "scaleUp": {
            "maxStepPerPeriod": draw(st.integers(1, 50)),
            "maxStepPercent": draw(st.integers(1, 300)),
            "periodSeconds": draw(st.integers(1, 60)),
        },
        "scaleDown": {
            "stabilizationWindowSeconds": draw(st.integers(0, 300)),
            "maxStepPerPeriod": draw(st.none() | st.integers(1, 20)),
            "periodSeconds": draw(st.integers(1, 60)),
        },
        "cooldownSeconds": draw(st.integers(0, 600)),
        "fallback": {
            "failureThreshold": draw(st.integers(1, 5)),
            "replicas": draw(st.none() | st.integers(low, high)),
        },
    }
    return spec.ScalingSpec.model_validate(data)


@st.composite
def observations(draw: st.DrawFn) -> QueueObservation:
    enqueued = draw(st.integers(0, 10**6))
    return QueueObservation(
        queue="q",
        observed_at_ms=int(NOW * 1000),
        waiting=draw(st.integers(0, 100_000)),
        active=draw(st.integers(0, 5_000)),
        oldest_ready_age_s=draw(st.floats(0, 3600)),
        enqueued_total=enqueued,
        completed_total=draw(st.integers(0, enqueued)),
    )


@st.composite
def states(draw: st.DrawFn) -> policy.PolicyState:
    times = st.floats(NOW - 1000, NOW)
    return policy.PolicyState(
        observed_at_ms=draw(st.none() | st.integers(int(NOW * 1000) - 60_000, int(NOW * 1000) - 1)),
        enqueued_total=draw(st.integers(0, 10**6)),
        finished_total=draw(st.integers(0, 10**6)),
        waiting=draw(st.integers(0, 1000)),
        arrival_rate=draw(st.none() | st.floats(0, 1000)),
        service_rate=draw(st.none() | st.floats(0, 100)),
        idle_since=draw(st.none() | times),
        failures=draw(st.integers(0, 10)),
        recommendations=tuple(draw(st.lists(st.tuples(times, st.floats(0, 1000)), max_size=5))),
        scale_events=tuple(draw(st.lists(st.tuples(times, st.integers(-50, 50)), max_size=5))),
    )


@FAST
@given(
    scaling=scaling_specs(),
    observation=st.none() | observations(),
    current=st.integers(0, 500),
    state=states(),
    concurrency=st.integers(1, 100),
)
def test_desired_within_bounds(
    scaling: spec.ScalingSpec,
    observation: QueueObservation | None,
    current: int,
    state: policy.PolicyState,
    concurrency: int,
) -> None:
    d = policy.decide(scaling, observation, current, state, NOW, paused=False, concurrency=concurrency)
    assert scaling.min_replicas <= d.desired <= scaling.max_replicas, d.reason
    assert d.direction == policy._direction(current, d.desired)
    assert d.state == policy.PolicyState.from_dict(d.state.to_dict())


@FAST
@given(
    scaling=scaling_specs(),
    observation=st.none() | observations(),
    current=st.integers(0, 500),
    state=states(),
)
def test_paused_keeps_current(
    scaling: spec.ScalingSpec, observation: QueueObservation | None, current: int, state: policy.PolicyState
) -> None:
    d = policy.decide(scaling, observation, current, state, NOW, paused=True, concurrency=10)
    assert (d.desired, d.direction, d.reason) == (current, policy.Direction.NONE, "paused")


@FAST
@given(
    scaling=scaling_specs(),
    observation=observations(),
    active=st.integers(1, 5_000),
    current=st.integers(0, 500),
    state=states(),
    concurrency=st.integers(1, 100),
)
def test_never_below_in_flight_work(
    scaling: spec.ScalingSpec,
    observation: QueueObservation,
    active: int,
    current: int,
    state: policy.PolicyState,
    concurrency: int,
) -> None:
    busy = QueueObservation(**{**_fields(observation), "active": active})
    d = policy.decide(scaling, busy, current, state, NOW, paused=False, concurrency=concurrency)
    assert d.desired >= 1
    assert d.desired >= min(scaling.max_replicas, math.ceil(active / concurrency)), d.reason


def _fields(observation: QueueObservation) -> dict[str, Any]:
    return {name: getattr(observation, name) for name in observation.__dataclass_fields__}


@st.composite
def steady_loads(draw: st.DrawFn) -> dict[str, Any]:
    steady = draw(st.integers(10, 2_000))
    low, high = math.ceil(steady * 0.8), math.floor(steady * 1.2)
    return {
        "arrival": draw(st.integers(1, 200)),  # jobs/s; times the 2 s poll keeps counters exact
        "service": draw(st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0])),  # jobs/s per replica
        "active": draw(st.integers(0, 500)),
        "waiting": draw(st.lists(st.integers(low, high), min_size=100, max_size=200)),
        "start": draw(st.integers(0, 300)),
    }


@st.composite
def steady_scaling_specs(draw: st.DrawFn) -> spec.ScalingSpec:
    """Specs whose fleet can reach the steady state within the run: room to grow, and fast steps."""
    kinds = draw(st.sampled_from([("backlog",), ("age",), ("backlog", "age")]))
    targets: dict[str, int] = {}
    if "backlog" in kinds:
        targets["backlogPerReplica"] = draw(st.integers(1, 100))
    if "age" in kinds:
        targets["maxOldestAge"] = draw(st.integers(5, 120))
    data: dict[str, Any] = {
        "minReplicas": draw(st.integers(0, 3)),
        "maxReplicas": 5_000,
        "pollingInterval": 2,
        "targets": targets,
        "scaleUp": {"maxStepPerPeriod": draw(st.integers(50, 5_000)), "periodSeconds": 2},
        "scaleDown": {
            "stabilizationWindowSeconds": draw(st.integers(0, 120)),
            "maxStepPerPeriod": draw(st.none() | st.integers(1, 50)),
            "periodSeconds": draw(st.integers(1, 30)),
        },
    }
    return spec.ScalingSpec.model_validate(data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(scaling=steady_scaling_specs(), load=steady_loads(), concurrency=st.integers(1, 50))
def test_constant_noisy_load_does_not_flap(
    scaling: spec.ScalingSpec, load: dict[str, Any], concurrency: int
) -> None:
    state, current, now = policy.PolicyState(), load["start"], NOW
    enqueued = finished = 0
    directions = []
    for poll, waiting in enumerate(load["waiting"]):
        observation = QueueObservation(
            queue="q",
            observed_at_ms=int(now * 1000),
            waiting=waiting,
            active=load["active"],
            oldest_ready_age_s=3.0,
            enqueued_total=enqueued,
            completed_total=finished,
        )
        d = policy.decide(scaling, observation, current, state, now, paused=False, concurrency=concurrency)
        # The first two polls are the cold start (rates not yet measured); judge the steady phase.
        if poll >= 2 and d.direction is not policy.Direction.NONE:
            directions.append(d.direction)
        state, current = d.state, d.desired
        # The next interval: constant arrivals, and every running replica serving at its rate.
        now += 2
        enqueued += load["arrival"] * 2
        finished += int(load["service"] * current * 2)
    reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    assert reversals <= 1, directions
