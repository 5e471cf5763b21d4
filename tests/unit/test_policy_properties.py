"""Properties of the scaling policy over generated specs, observations and states.

| property                                                      | holds for                              |
| ------------------------------------------------------------- | -------------------------------------- |
| minReplicas <= desired <= maxReplicas; a kind; the state      | every decision that is not paused      |
| round-trips through status.policy                             |                                        |
| paused -> desired == current                                  | every paused decision                  |
| desired >= min(max, ceil(jobs on serving pods / concurrency)) | every observation with jobs in flight  |
| and >= 1                                                      |                                        |
| the scaleUp step never holds back what the age target needs   | a job that will be late, a measured    |
|                                                               | service time                           |
| at most one reversal of direction                             | constant load with +/-20% noise, in a  |
|                                                               | fluid queue the fleet serves, and a    |
|                                                               | window of at least one poll            |
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobqueue_operator import policy, rates, spec, stabilization

from worker_runtime.observation import QueueObservation, WorkerHeartbeat

NOW = 50_000.0
FAST = settings(max_examples=150, deadline=None)


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
            "tolerance": draw(st.sampled_from([0.0, 0.1, 0.35, 0.9])),
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
def heartbeats(draw: st.DrawFn) -> tuple[WorkerHeartbeat, ...]:
    count = draw(st.integers(0, 30))
    return tuple(
        WorkerHeartbeat(f"w{i}", f"pod-{i // 2}", draw(st.integers(0, 20)), 10, 0, draw(st.booleans()))
        for i in range(count)
    )


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
        workers=draw(heartbeats()),
    )


@st.composite
def states(draw: st.DrawFn) -> policy.PolicyState:
    times = st.floats(NOW - 1000, NOW)
    rate = st.none() | st.floats(0, 1000)
    measured = rates.Rates(
        observed_at_ms=draw(st.none() | st.integers(int(NOW * 1000) - 60_000, int(NOW * 1000) - 1)),
        enqueued_total=draw(st.integers(0, 10**6)),
        finished_total=draw(st.integers(0, 10**6)),
        active=draw(st.integers(0, 1000)),
        arrival_rate=draw(rate),
        arrival_last=draw(rate),
        arrival_prev=draw(rate),
        busy=draw(st.none() | st.floats(0, 1000)),
        finish_rate=draw(st.none() | st.floats(0, 1000)),
        startup_s=draw(st.none() | st.floats(0, 300)),
        pending=tuple(draw(st.lists(st.tuples(times, st.integers(0, 500)), max_size=3))),
    )
    memory = stabilization.Memory(
        recommendations=tuple(draw(st.lists(st.tuples(times, st.floats(0, 1000)), max_size=5))),
        scale_events=tuple(draw(st.lists(st.tuples(times, st.integers(-50, 50)), max_size=5))),
        watching_since=draw(st.none() | times),
        steady_up_at=draw(st.none() | times),
        learned_band=draw(st.floats(0, 1)),
        learned_at=draw(st.none() | times),
        quiet_since=draw(st.none() | times),
        gaps=tuple(draw(st.lists(st.floats(0, 1000), max_size=4))),
    )
    return policy.PolicyState(
        rates=measured,
        memory=memory,
        idle_since=draw(st.none() | times),
        failures=draw(st.integers(0, 10)),
    )


@FAST
@given(
    scaling=scaling_specs(),
    observation=st.none() | observations(),
    current=st.integers(0, 500),
    state=states(),
    concurrency=st.integers(1, 100),
    ready=st.none() | st.integers(0, 500),
)
def test_desired_within_bounds(
    scaling: spec.ScalingSpec,
    observation: QueueObservation | None,
    current: int,
    state: policy.PolicyState,
    concurrency: int,
    ready: int | None,
) -> None:
    d = policy.decide(
        scaling, observation, current, state, NOW, paused=False, concurrency=concurrency, ready_replicas=ready
    )
    assert scaling.min_replicas <= d.desired <= scaling.max_replicas, d.reason
    assert isinstance(d.kind, policy.DecisionKind) and d.reason
    assert d.direction == (
        policy.Direction.UP
        if d.desired > current
        else policy.Direction.DOWN
        if d.desired < current
        else policy.Direction.NONE
    )
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
    assert (d.desired, d.direction, d.kind) == (current, policy.Direction.NONE, policy.DecisionKind.PAUSED)


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
    # Jobs on draining pods are finished by those pods; the rest need a replica's slot.
    serving = max(0, active - sum(w.inflight for w in busy.workers if w.draining))
    assert d.desired >= min(scaling.max_replicas, max(1, math.ceil(serving / concurrency))), d.reason


def _fields(observation: QueueObservation) -> dict[str, Any]:
    return {name: getattr(observation, name) for name in observation.__dataclass_fields__}


@FAST
@given(
    scaling=scaling_specs(),
    observation=observations(),
    current=st.integers(0, 300),
    state=states(),
    service=st.floats(0.01, 100),
    concurrency=st.integers(1, 50),
)
def test_the_step_never_holds_back_what_the_age_target_needs(
    scaling: spec.ScalingSpec,
    observation: QueueObservation,
    current: int,
    state: policy.PolicyState,
    service: float,
    concurrency: int,
) -> None:
    target = scaling.targets.max_oldest_age
    startup = state.rates.startup_estimate_s
    measured = rates.Rates(**{**_fields(state.rates), "busy": service, "finish_rate": 1.0})
    late = QueueObservation(
        **{
            **_fields(observation),
            "waiting": max(1, observation.waiting),
            "oldest_ready_age_s": (target or 0) + 1.0,
        }
    )
    d = policy.decide(
        scaling, late, current, policy.PolicyState(rates=measured, memory=state.memory), NOW, paused=False,
        concurrency=concurrency,
    )  # fmt: skip
    if (
        target is not None
        and late.oldest_ready_age_s + startup >= target
        and d.kind != policy.DecisionKind.SCALE_TO_ZERO
    ):
        assert d.desired >= min(scaling.max_replicas, d.recommended), d.reason


@st.composite
def steady_loads(draw: st.DrawFn) -> dict[str, Any]:
    """Stationary noise: every poll's arrivals off by up to +/-amplitude, uniformly (a calm load with
    one dip in it is a load that dropped, which a short window is asked to follow)."""
    noise = random.Random(draw(st.integers(0, 2**32)))
    amplitude = draw(st.floats(0.05, 0.2))
    return {
        "arrival": draw(st.floats(1, 500)),  # jobs/s
        "service": draw(st.sampled_from([0.2, 1.0, 2.0, 5.0])),  # seconds per job
        "noise": [noise.uniform(-amplitude, amplitude) for _ in range(draw(st.integers(150, 250)))],
        "start": draw(st.integers(0, 300)),
    }


@st.composite
def steady_scaling_specs(draw: st.DrawFn) -> spec.ScalingSpec:
    """Specs whose fleet can reach the steady state within the run: room to grow, and fast steps. The
    window is at least one polling interval: with none, each poll's need is followed, as asked."""
    kinds = draw(st.sampled_from([("backlog",), ("age",), ("backlog", "age")]))
    targets: dict[str, int] = {}
    if "backlog" in kinds:
        targets["backlogPerReplica"] = draw(st.integers(1, 100))
    if "age" in kinds:
        targets["maxOldestAge"] = draw(st.integers(10, 120))
    data: dict[str, Any] = {
        "minReplicas": draw(st.integers(0, 3)),
        "maxReplicas": 5_000,
        "pollingInterval": 2,
        "targets": targets,
        "scaleUp": {"maxStepPerPeriod": draw(st.integers(50, 5_000)), "periodSeconds": 2},
        "scaleDown": {
            "stabilizationWindowSeconds": draw(st.integers(2, 120)),
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
    """A fluid queue: arrivals at a constant rate with +/-20% noise per poll, served by the ready
    replicas at concurrency / service jobs/s each (pods ready at once, told as ready_replicas)."""
    state, current, now = policy.PolicyState(), load["start"], NOW
    waiting = enqueued = finished = 0.0
    active = 0.0
    directions = []
    settle = 60  # polls: two minutes to reach the steady state from any start
    for poll, noise in enumerate(load["noise"]):
        observation = QueueObservation(
            queue="q",
            observed_at_ms=int(now * 1000),
            waiting=round(waiting),
            active=round(active),
            oldest_ready_age_s=0.0 if waiting < 1 else waiting / max(load["arrival"], 1e-9),
            enqueued_total=round(enqueued),
            completed_total=round(finished),
        )
        d = policy.decide(
            scaling,
            observation,
            current,
            state,
            now,
            paused=False,
            concurrency=concurrency,
            ready_replicas=current,
        )
        if poll >= settle and d.direction is not policy.Direction.NONE:
            directions.append(d.direction)
        state, current = d.state, d.desired
        arrived = load["arrival"] * (1 + noise) * 2
        capacity = current * concurrency / load["service"] * 2
        served = min(capacity, waiting + arrived)
        waiting += arrived - served
        active = min(current * concurrency, served / 2 * load["service"])
        enqueued += arrived
        finished += served
        now += 2
    reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    assert reversals <= 1, directions
