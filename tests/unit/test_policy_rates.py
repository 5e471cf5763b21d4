"""What the policy measures (``rates``) and what it keeps in status.policy (``PolicyState``).

| case                                   | shows                                                      |
| -------------------------------------- | ---------------------------------------------------------- |
| counter deltas                         | λ from the enqueue counter, smoothed over 30 s             |
| Little's law                           | service time = jobs in flight / finished per second, with  |
|                                        | no queue, whatever the number of pods, never from nothing  |
| idle intervals                         | leave the service time as it was                           |
| a batch                                | counts at most 3 x the average until confirmed             |
| rising / falling                       | confirmed by both of the last two intervals                |
| start-up                               | from a scale-up to the poll that saw its pods ready        |
| ready replicas                         | explicit count, else non-draining heartbeats' pods         |
| state                                  | round-trips through JSON; reads an older version's state   |
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from jobqueue_operator import policy, rates, spec, stabilization

from worker_runtime.observation import QueueObservation, WorkerHeartbeat


def counters(t: float, enqueued: int, finished: int, active: int = 0, **extra: Any) -> QueueObservation:
    return QueueObservation(
        queue="q",
        observed_at_ms=int(t * 1000),
        enqueued_total=enqueued,
        completed_total=finished,
        active=active,
        **extra,
    )


def feed(*observations: QueueObservation, ready: int = 1, current: int = 1) -> rates.Rates:
    measured = rates.Rates()
    for observation in observations:
        measured = rates.measure(measured, observation, ready, current, observation.observed_at_ms / 1000)
    return measured


def test_arrival_rate_from_the_counter() -> None:
    measured = feed(counters(0, 100, 50), counters(2, 124, 58))
    assert measured.arrival_rate == pytest.approx(12.0)  # 24 enqueued in 2 s
    assert measured.arrival_last == pytest.approx(12.0) and measured.arrival_prev is None
    assert measured.throughput == pytest.approx(4.0)


def test_rates_are_smoothed() -> None:
    measured = rates.Rates(observed_at_ms=0, arrival_rate=10.0, arrival_last=20.0)
    measured = rates.measure(measured, counters(30, 600, 0), 1, 1, 30.0)
    alpha = 1 - math.exp(-30 / rates.RATE_TIME_CONSTANT_S)
    assert measured.arrival_rate == pytest.approx(10 + alpha * (20 - 10))


@pytest.mark.parametrize("pods", [1, 3, 40])
def test_service_time_by_littles_law_whatever_the_pods(pods: int) -> None:
    # 8 jobs in flight throughout, 4 finishing a second: each holds its slot 2 s. Nothing waits.
    observations = [counters(2 * i, 8 * i, 8 * i, active=8) for i in range(30)]
    measured = feed(*observations, ready=pods, current=pods)
    assert measured.service_time_s == pytest.approx(2.0)


def test_no_service_time_from_nothing() -> None:
    measured = feed(counters(0, 0, 0), counters(2, 0, 0), counters(4, 0, 0))
    assert measured.service_time_s is None  # nothing ran: unknown, not zero


def test_idle_intervals_leave_the_service_time_alone() -> None:
    busy = [counters(2 * i, 8 * i, 8 * i, active=8) for i in range(30)]
    idle = [counters(60 + 2 * i, 232, 232) for i in range(30)]
    measured = feed(*busy, *idle)
    assert measured.service_time_s == pytest.approx(2.0, rel=0.05)


def test_jobs_never_seen_running_give_a_floor_not_an_overflow() -> None:
    # Jobs so short that no poll sees one active: the busy average decays towards 0 while jobs
    # keep finishing. The service time stops at a floor and the policy still decides.
    observations = [counters(2 * i, 50 * i, 50 * i, active=1 if i == 1 else 0) for i in range(2000)]
    assert feed(*observations).service_time_s == rates.MIN_SERVICE_S
    scaling = spec.ScalingSpec.model_validate(
        {"minReplicas": 0, "maxReplicas": 1, "targets": {"maxOldestAge": 1}, "activation": {"waiting": 1},
         "scaleUp": {"maxStepPerPeriod": 1, "maxStepPercent": 1, "periodSeconds": 1},
         "scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": 0, "periodSeconds": 1},
         "cooldownSeconds": 0}
    )  # fmt: skip
    # What overflowed (``ceil(inf)``) before the floor: a busy average of 4e-306 at 1 job/s.
    state = policy.PolicyState(rates=rates.Rates(busy=4.2e-306, finish_rate=1.0, pending=((49_000.0, 0),)))
    idle = counters(50_000, 0, 0, workers=(WorkerHeartbeat("w0", "pod-0", 0, 10, 0, False),))
    # (the operator's clock behind the observation's, as a skew between it and Redis makes it)
    decision = policy.decide(scaling, idle, 0, state, 10_000.0, paused=False, concurrency=1)
    assert 0 <= decision.desired <= 1


def test_a_batch_counts_three_times_the_average_until_confirmed() -> None:
    measured = feed(counters(0, 0, 0), counters(2, 20, 0), counters(4, 40, 0))
    assert measured.arrival_rate == pytest.approx(10.0)
    batch = rates.measure(measured, counters(6, 1040, 0), 1, 1, 6.0)  # 1,000 at once: 500/s in this interval
    alpha = 1 - math.exp(-2 / rates.RATE_TIME_CONSTANT_S)
    assert batch.arrival_rate == pytest.approx(10 + alpha * (3 * 10 - 10))
    assert batch.arrival_last == pytest.approx(500.0)
    assert batch.rising_rate == pytest.approx(10.0)  # the interval before was not as fast
    again = rates.measure(batch, counters(8, 2040, 0), 1, 1, 8.0)  # and again: a rate, counted in full
    assert again.rising_rate == pytest.approx(500.0)
    assert again.arrival_rate == pytest.approx(batch.arrival_rate + alpha * (500 - batch.arrival_rate))


def test_a_drop_is_confirmed_by_two_intervals() -> None:
    measured = feed(counters(0, 0, 0), counters(2, 200, 0), counters(4, 400, 0), counters(6, 402, 0))
    assert measured.falling_rate == pytest.approx(100.0)  # one slow interval is not a drop yet
    measured = rates.measure(measured, counters(8, 404, 0), 1, 1, 8.0)
    assert measured.falling_rate == pytest.approx(1.0)


def test_counter_reset_is_skipped() -> None:
    measured = rates.Rates(observed_at_ms=0, enqueued_total=1000, arrival_rate=3.0)
    measured = rates.measure(measured, counters(2, 10, 0), 1, 1, 2.0)
    assert measured.arrival_rate == 3.0 and measured.enqueued_total == 10


def test_start_up_is_timed_from_the_scale_up_to_its_ready_pods() -> None:
    measured = rates.scaled_up(rates.Rates(), 100.0, 5)
    measured = rates.measure(measured, counters(104, 0, 0), 3, 5, 104.0)
    assert measured.startup_s is None and measured.pending == ((100.0, 5),)
    measured = rates.measure(measured, counters(112, 0, 0), 5, 5, 112.0)
    assert measured.startup_s == pytest.approx(12.0) and measured.pending == ()
    assert rates.Rates().startup_estimate_s == rates.DEFAULT_STARTUP_S


def test_a_scale_up_undone_before_its_pods_came_is_not_timed() -> None:
    measured = rates.scaled_up(rates.Rates(), 100.0, 8)
    measured = rates.measure(measured, counters(104, 0, 0), 3, 4, 104.0)
    assert measured.pending == () and measured.startup_s is None


def test_landing_times_of_the_pods_still_starting() -> None:
    measured = rates.Rates(startup_s=10.0, pending=((100.0, 4), (104.0, 9)))
    assert rates.landing_times(measured, 2, 9, 106.0) == [(4.0, 4), (8.0, 9)]


def beat(pod: str, *, draining: bool = False) -> WorkerHeartbeat:
    return WorkerHeartbeat(f"{pod}-w", pod, 0, 4, 0, draining)


def test_ready_replicas() -> None:
    observation = counters(0, 0, 0, workers=(beat("a"), beat("a"), beat("b"), beat("c", draining=True)))
    assert rates.ready_replicas(observation, None) == 2  # a pod running two worker processes counts once
    assert rates.ready_replicas(observation, 7) == 7
    assert rates.ready_replicas(counters(0, 0, 0), None) == 0


def full_state() -> policy.PolicyState:
    return policy.PolicyState(
        rates=rates.Rates(
            observed_at_ms=123,
            enqueued_total=5,
            finished_total=4,
            active=2,
            arrival_rate=1.5,
            arrival_last=2.0,
            arrival_prev=1.0,
            busy=0.5,
            finish_rate=0.25,
            throughput=1.0,
            startup_s=11.5,
            pending=((1.0, 3),),
        ),
        memory=stabilization.Memory(
            recommendations=((1.0, 3.5), (2.0, 2.0)),
            scale_events=((1.0, 3), (2.0, -1)),
            watching_since=0.5,
            steady_up_at=1.0,
            learned_band=0.2,
            learned_at=2.0,
            quiet_since=3.0,
            gaps=(200.0, 150.5),
        ),
        idle_since=99.5,
        failures=2,
    )


def test_state_round_trips_through_json() -> None:
    state = full_state()
    assert policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


# What the previous version of the policy wrote to status.policy.
OLD_STATE = {
    "observedAtMs": 1_700_000_000_000,
    "enqueuedTotal": 5000,
    "finishedTotal": 4990,
    "waiting": 10,
    "arrivalRate": 12.5,
    "serviceRate": 0.0,
    "throughput": 12.0,
    "idleSince": None,
    "failures": 0,
    "recommendations": [[1_700_000_000.0, 7.25]],
    "scaleEvents": [[1_699_999_990.0, 4]],
}


def test_a_state_written_by_the_previous_version_is_read() -> None:
    state = policy.PolicyState.from_dict(OLD_STATE)
    assert state.rates.arrival_rate == 12.5 and state.rates.enqueued_total == 5000
    assert state.rates.throughput == 12.0 and state.throughput == 12.0
    assert state.rates.service_time_s is None  # the old per-replica rate is not trusted
    assert state.memory.scale_events == ((1_699_999_990.0, 4),)
    assert state.memory.watching_since is None  # so the next poll starts watching a window
    observation = counters(1_700_000_002, 5024, 5014, active=8)
    d = policy.decide(policy_scaling(), observation, 4, state, 1_700_000_002.0, paused=False, concurrency=4)
    assert d.desired == 4 and d.kind == policy.DecisionKind.WATCHING, d.reason


def policy_scaling() -> spec.ScalingSpec:
    return spec.ScalingSpec.model_validate({"maxReplicas": 10, "targets": {"maxOldestAge": 30}})


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "garbage",
        {},
        {
            "failures": "x",
            "recommendations": [[1, "a"], "b", [2]],
            "arrivalRate": True,
            "quietGaps": ["x", -1],
        },
        {"arrivalRate": "nan", "idleSince": "inf", "pending": [[1, 2, 3]], "learnedBand": 7},
    ],
)
def test_unreadable_state_falls_back_to_defaults(stored: Any) -> None:
    state = policy.PolicyState.from_dict(stored)
    assert state.failures == 0 and state.memory.recommendations == () and state.rates.arrival_rate is None
    assert state.idle_since is None and state.memory.gaps == () and state.rates.pending == ()
    assert 0.0 <= state.memory.learned_band <= 1.0
