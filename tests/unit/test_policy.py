"""The scaling policy, case by case (properties: test_policy_properties.py; reasons: test_policy_reasons.py).

Each ``CASES`` row: spec overrides, the observation, current replicas, remembered state -> expected
desired replicas, decision kind and a fragment of the reason.

| group          | what the rows show                                                           |
| -------------- | ---------------------------------------------------------------------------- |
| activation     | wake from zero within one poll, only past activation.waiting, sized by need |
| clamp          | [minReplicas, maxReplicas] always wins (at_max, at_min)                      |
| step limits    | scaleUp per period (pods or percent), scaleDown pods per period              |
| age target     | the step is waived when the oldest job plus a start-up reaches T             |
| window         | the highest steady need in stabilizationWindowSeconds bounds a scale-down    |
| hysteresis     | tolerance after a steady scale-up, narrowing; a learned band                 |
| holds          | no scale-down while jobs wait, while arrivals rise, before a window is seen  |
| quiet gaps     | a quiet queue whose gaps outlast the window does not hold it                 |
| cooldown       | the last replica goes only after cooldownSeconds idle                        |
| in flight      | never below the jobs on serving pods; draining pods' jobs do not count       |
| fallback       | keep, then fallback.replicas after failureThreshold failed probes            |
| pause          | current replicas, whatever the queue says                                    |
| flow control   | paused claims, a running cap, a rate limit: no pod they would leave idle     |
| group limits   | jobs held by group rate limits drive neither the backlog nor the age target  |
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import policy, rates, spec, stabilization

from worker_runtime.flow import BreakerState, FlowConfig, RateLimit
from worker_runtime.observation import QueueObservation, WorkerHeartbeat

NOW = 10_000.0
CONCURRENCY = 10
K = policy.DecisionKind


def scaling(**overrides: Any) -> spec.ScalingSpec:
    data: dict[str, Any] = {"maxReplicas": 20, "targets": {"backlogPerReplica": 50}}
    data.update(overrides)
    return spec.ScalingSpec.model_validate(data)


def pods(
    count: int, inflight: int = 0, *, draining: int = 0, finishing: int = 0
) -> tuple[WorkerHeartbeat, ...]:
    """Heartbeats of ``count`` serving pods with ``inflight`` jobs each, and of ``draining`` draining
    pods with ``finishing`` jobs each."""
    seen = int(NOW * 1000)
    beats = [WorkerHeartbeat(f"w{i}", f"pod-{i}", inflight, CONCURRENCY, seen) for i in range(count)]
    beats += [
        WorkerHeartbeat(f"d{i}", f"old-{i}", finishing, CONCURRENCY, seen, True) for i in range(draining)
    ]
    return tuple(beats)


def obs(**fields: Any) -> QueueObservation:
    return QueueObservation(queue="q", observed_at_ms=int(NOW * 1000), **fields)


def state(
    *,
    service_s: float | None = 1.0,
    arrival: float | None = None,
    last: float | None = None,
    prev: float | None = None,
    startup_s: float | None = 10.0,
    idle: float | None = None,
    watched: float = 1000.0,
    **memory: Any,
) -> policy.PolicyState:
    """A state with measured rates (``service_s`` per job: Little's law's busy / finish rate)."""
    measured = rates.Rates(
        arrival_rate=arrival,
        arrival_last=last,
        arrival_prev=prev,
        busy=service_s,
        finish_rate=1.0 if service_s is not None else None,
        startup_s=startup_s,
    )
    remembered = stabilization.Memory(watching_since=NOW - watched, **memory)
    return policy.PolicyState(rates=measured, memory=remembered, idle_since=idle)


BUSY = state()
IDLE_30S = state(idle=NOW - 30)
IDLE_130S = state(idle=NOW - 130)
AGE = {"maxOldestAge": 30}
WIDE = {"maxReplicas": 100, "targets": AGE}

CASES: list[
    tuple[str, dict[str, Any], dict[str, Any], int, policy.PolicyState, int, policy.DecisionKind, str]
] = [
    # activation
    ("activate on one job", {}, {"waiting": 1}, 0, BUSY, 1, K.ACTIVATED, "1 ready >= activation.waiting 1"),
    (
        "below activation",
        {"activation": {"waiting": 5}},
        {"waiting": 3},
        0,
        BUSY,
        0,
        K.IDLE,
        "3 ready < activation",
    ),
    ("due delayed job wakes", {}, {"oldest_ready_age_s": 4.0}, 0, BUSY, 1, K.ACTIVATED, "activated 0 -> 1"),
    (
        "aging job wakes below activation",
        {"activation": {"waiting": 5}, "targets": AGE},
        {"waiting": 2, "oldest_ready_age_s": 16.0},
        0,
        BUSY,
        1,
        K.ACTIVATED,
        "half of maxOldestAge 30s",
    ),
    ("stale leases wake", {}, {"active": 3}, 0, BUSY, 1, K.ACTIVATED, "3 jobs running"),
    (
        "a guessed burst from zero is step-limited",
        {"targets": AGE},
        {"waiting": 5000},
        0,
        state(service_s=None),
        4,
        K.ACTIVATED,
        "limited by scaleUp to 4",
    ),
    (
        "a measured burst from zero is sized from the need",
        {},
        {"waiting": 500},
        0,
        BUSY,
        10,
        K.ACTIVATED,
        "activated 0 -> 10",
    ),
    ("idle at zero stays", {}, {}, 0, BUSY, 0, K.IDLE, "0 ready < activation.waiting 1"),
    # clamp
    (
        "max clamps",
        {},
        {"waiting": 5000},
        18,
        BUSY,
        20,
        K.SCALE_UP_BACKLOG,
        "18 -> 20 (maxReplicas; asked for",
    ),
    ("at max", {}, {"waiting": 5000}, 20, BUSY, 20, K.AT_MAX, "at maxReplicas 20"),
    (
        "above a lowered max",
        {"maxReplicas": 5},
        {"waiting": 5000},
        8,
        BUSY,
        5,
        K.AT_MAX,
        "8 -> 5 (maxReplicas",
    ),
    ("min holds an idle queue", {"minReplicas": 3}, {}, 3, IDLE_130S, 3, K.AT_MIN, "at minReplicas 3"),
    ("min lifts from zero", {"minReplicas": 2}, {}, 0, BUSY, 2, K.AT_MIN, "0 -> 2 (minReplicas"),
    # step limits
    ("up by pods", {}, {"waiting": 1000}, 3, BUSY, 7, K.SCALE_UP_LIMITED, "4 pods and 100% of 3 per 15s"),
    ("up by percent", {}, {"waiting": 1000}, 6, BUSY, 12, K.SCALE_UP_LIMITED, "limited by scaleUp to 12"),
    (
        "ups within the period count",
        {},
        {"waiting": 1000},
        8,
        state(scale_events=((NOW - 5, 4),)),
        8,
        K.SCALE_UP_LIMITED,
        "holding 8, limited by scaleUp to 8",
    ),
    (
        "ups before the period do not",
        {},
        {"waiting": 1000},
        8,
        state(scale_events=((NOW - 16, 4),)),
        16,
        K.SCALE_UP_LIMITED,
        "of 8 per 15s, 0 added",
    ),
    (
        "down by pods",
        {"scaleDown": {"maxStepPerPeriod": 5}},
        {"waiting": 100},
        20,
        BUSY,
        15,
        K.SCALE_DOWN_LIMITED,
        "5 pods per 15s, 0 removed",
    ),
    ("down unlimited", {}, {"waiting": 100}, 20, BUSY, 3, K.SCALE_DOWN, "steady need in the last 60s 2.00"),
    # age target
    (
        "late jobs waive the step",
        WIDE,
        {"waiting": 2000, "oldest_ready_age_s": 22.0, "workers": pods(2, 10)},
        2,
        state(arrival=50.0),
        11,
        K.SCALE_UP_AGE,
        "beyond scaleUp to 6 (the larger of 4 pods and 100% of 2 per 15s, 0 added in this period) because "
        "the oldest job (22s) plus a start-up (10s) reaches maxOldestAge 30s",
    ),
    (
        "a surge projected past half of T waives the step",
        WIDE,
        {"waiting": 200, "oldest_ready_age_s": 2.0, "workers": pods(2, 10)},
        2,
        state(arrival=50.0, last=100.0, prev=100.0),
        10,
        K.SCALE_UP_AGE,
        "at λ 100/s jobs would wait 50s by then, over half of maxOldestAge 30s",
    ),
    (
        "a short queue costs no pod",
        WIDE,
        {"waiting": 40, "oldest_ready_age_s": 1.0, "workers": pods(5, 10), "active": 50},
        5,
        state(arrival=52.0),
        5,
        K.STEADY,
        "the queue stays within what may wait",
    ),
    (
        "no service time yet: no scale-up on a guess",
        WIDE,
        {"waiting": 400, "oldest_ready_age_s": 3.0, "workers": pods(5, 10), "active": 50},
        5,
        state(service_s=None),
        5,
        K.STEADY,
        "no job seen finishing yet",
    ),
    # stabilization window
    (
        "peak in window holds",
        {},
        {"waiting": 100},
        10,
        state(recommendations=((NOW - 30, 10.0),)),
        10,
        K.HELD_BY_WINDOW,
        "steady need in the last 60s 10.00",
    ),
    (
        "peak out of window",
        {},
        {"waiting": 100},
        10,
        state(recommendations=((NOW - 61, 10.0),)),
        3,
        K.SCALE_DOWN,
        "10 -> 3",
    ),
    (
        "down to the window peak plus the band",
        {},
        {"waiting": 100},
        10,
        state(recommendations=((NOW - 70, 10.0), (NOW - 50, 4.5))),
        5,
        K.SCALE_DOWN,
        "4.50, +5% hysteresis = 4.73",
    ),
    # hysteresis
    (
        "tolerance right after a steady scale-up",
        {},
        {"waiting": 300},
        10,
        state(steady_up_at=NOW - 1),
        9,
        K.SCALE_DOWN,
        "+35% hysteresis",
    ),
    (
        "tolerance narrowed four windows later",
        {},
        {"waiting": 300},
        10,
        state(steady_up_at=NOW - 240),
        7,
        K.SCALE_DOWN,
        "+5% hysteresis",
    ),
    (
        "a learned band",
        {},
        {"waiting": 300},
        10,
        state(learned_band=0.3, learned_at=NOW),
        8,
        K.SCALE_DOWN,
        "+30% hysteresis",
    ),
    # holds
    (
        "no scale-down while jobs wait",
        WIDE,
        {"waiting": 500, "oldest_ready_age_s": 4.0, "workers": pods(10, 10), "active": 100},
        20,
        state(arrival=1.0),
        20,
        K.HELD_BY_BACKLOG,
        "holding 20 while 500 jobs wait",
    ),
    (
        "no scale-down while arrivals rise",
        WIDE,
        {"workers": pods(10)},
        10,
        state(arrival=10.0, last=20.0, prev=20.0),
        10,
        K.HELD_BY_RISING,
        "at 20.0/s or more, over the 30s average 10.0/s",
    ),
    (
        "a new JobQueue over a running Deployment watches first",
        {},
        {},
        4,
        state(watched=0.0),
        4,
        K.WATCHING,
        "watched the queue 0s of the 60s",
    ),
    # quiet gaps
    (
        "quiet, after gaps longer than the window",
        {},
        {},
        10,
        state(idle=NOW - 10, recommendations=((NOW - 20, 8.0),), quiet_since=NOW - 10, gaps=(200.0, 180.0)),
        1,
        K.COOLDOWN,
        "the last quiet gaps (200s, 180s) outlasted the 60s window",
    ),
    (
        "quiet, but a gap was shorter than the window",
        {},
        {},
        10,
        state(idle=NOW - 10, recommendations=((NOW - 20, 8.0),), quiet_since=NOW - 10, gaps=(200.0, 40.0)),
        9,
        K.SCALE_DOWN,
        "10 -> 9: highest steady need in the last 60s 8.00, +5% hysteresis = 8.40",
    ),
    # cooldown
    (
        "cooldown keeps one",
        {},
        {},
        1,
        IDLE_30S,
        1,
        K.COOLDOWN,
        "keeping 1 until idle for cooldownSeconds 120 (idle 30s)",
    ),
    ("cooldown keeps one from three", {}, {}, 3, IDLE_30S, 1, K.COOLDOWN, "3 -> 1"),
    ("cooled down", {}, {}, 1, IDLE_130S, 0, K.SCALE_TO_ZERO, "1 -> 0: idle for 130s >= cooldownSeconds 120"),
    ("short cooldown", {"cooldownSeconds": 10}, {}, 2, IDLE_30S, 0, K.SCALE_TO_ZERO, "2 -> 0"),
    # in flight
    ("in-flight floor", {}, {"active": 25}, 10, BUSY, 3, K.SCALE_DOWN, "25 jobs in flight on serving pods"),
    ("one job in flight", {"cooldownSeconds": 0}, {"active": 1}, 1, BUSY, 1, K.STEADY, "steady at 1"),
    ("floor beats step limit", {}, {"active": 150}, 1, BUSY, 15, K.SCALE_UP_IN_FLIGHT, "1 -> 15"),
    ("max beats floor", {"maxReplicas": 5}, {"active": 150}, 5, BUSY, 5, K.AT_MAX, "at maxReplicas 5"),
    (
        "jobs on draining pods are theirs",
        {"targets": AGE},
        {"active": 100, "workers": pods(2, 0, draining=10, finishing=10)},
        2,
        state(idle=None),
        1,
        K.COOLDOWN,
        "2 -> 1",
    ),
    # pause
    (
        "paused keeps even out of range",
        {"paused": True},
        {"waiting": 5000},
        50,
        BUSY,
        50,
        K.PAUSED,
        "paused: keeping 50",
    ),
    # flow control: no pod the queue's pause, running cap or rate limit would leave idle
    (
        "paused claims hold the count against a backlog",
        {},
        {"waiting": 5000, "flow": FlowConfig(paused=True)},
        2,
        BUSY,
        2,
        K.CLAIMS_PAUSED,
        "keeping 2, claims paused (whilePaused Keep) (asked for 6)",
    ),
    (
        "paused claims let an idle fleet go",
        {},
        {"flow": FlowConfig(paused=True)},
        3,
        IDLE_130S,
        0,
        K.CLAIMS_PAUSED,
        "3 -> 0, claims paused",
    ),
    (
        "a running cap bounds the backlog target",
        {},
        {"waiting": 500, "flow": FlowConfig(max_running=25)},
        1,
        BUSY,
        3,
        K.CAPPED,
        "1 -> 3, maxRunning 25 / concurrency 10 = 3 pods (asked for 5)",
    ),
    (
        "a rate limit bounds the age target",
        WIDE,
        {"waiting": 3000, "oldest_ready_age_s": 120.0, "flow": FlowConfig(rate_limit=RateLimit(20, 1.0))},
        2,
        state(arrival=20.0),
        2,
        K.RATE_LIMITED,
        "keeping 2, rate limit 20/1s x service time 1.00s / concurrency 10 = 2 pods",
    ),
    (
        "a rate limit above the need does not bind",
        {},
        {"waiting": 100, "flow": FlowConfig(rate_limit=RateLimit(1000, 1.0))},
        1,
        BUSY,
        2,
        K.SCALE_UP_BACKLOG,
        "1 -> 2",
    ),
    (
        "an open breaker's parked jobs are no reason to scale",
        {},
        {"delayed": 40, "active": 15, "workers": pods(2, 8), "breakers": (BreakerState("call", "open", 1),)},
        2,
        BUSY,
        2,
        K.BREAKER_OPEN,
        "keeping 2, circuit breakers open: call (open); their jobs are parked",
    ),
    (
        "a cap of zero is a pause of the fleet",
        {},
        {"waiting": 100, "flow": FlowConfig(max_running=0)},
        1,
        BUSY,
        0,
        K.CAPPED,
        "1 -> 0, maxRunning 0 / concurrency 10 = 0 pods",
    ),
    # Group rate limits: the jobs they hold wait for their group's window, not for a pod.
    (
        "a backlog held by group limits is no reason to scale up",
        {},
        {"waiting": 5000, "group_held": 4950, "active": 20, "workers": pods(2, 10)},
        2,
        BUSY,
        2,
        K.STEADY,
        "need 2 (4950 more waiting jobs held by group rate limits left out",
    ),
    (
        "nor does it drive the age target",
        WIDE,
        {
            "waiting": 5000,
            "group_held": 4950,
            "active": 20,
            "oldest_ready_age_s": 2.0,
            "workers": pods(2, 10),
        },
        2,
        state(arrival=20.0),
        2,
        K.STEADY,
        "4950 more waiting jobs held by group rate limits left out",
    ),
    (
        "the same backlog, not held, does",
        WIDE,
        {"waiting": 5000, "active": 20, "oldest_ready_age_s": 2.0, "workers": pods(2, 10)},
        2,
        state(arrival=20.0),
        29,
        K.SCALE_UP_AGE,
        "4800 of the 5000 waiting now left",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "fields", "current", "remembered", "desired", "kind", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(
    overrides: dict[str, Any],
    fields: dict[str, Any],
    current: int,
    remembered: policy.PolicyState,
    desired: int,
    kind: policy.DecisionKind,
    reason: str,
) -> None:
    s = scaling(**overrides)
    d = policy.decide(s, obs(**fields), current, remembered, NOW, paused=s.paused, concurrency=CONCURRENCY)
    assert (d.desired, d.kind) == (desired, kind), d.reason
    assert d.direction == policy.Direction.UP if desired > current else d.direction != policy.Direction.UP
    assert reason in d.reason


FALLBACK_CASES = [
    ("first failure keeps", {}, 0, 4, 4, K.PROBE_FAILED, "probe failed (1 of failureThreshold 3): keeping 4"),
    ("threshold without replicas keeps", {}, 2, 4, 4, K.PROBE_FAILED, "3 times, no fallback.replicas"),
    (
        "threshold goes to fallback",
        {"fallback": {"replicas": 6}},
        2,
        4,
        6,
        K.FALLBACK,
        "fallback.replicas, 4 -> 6",
    ),
    ("long outage stays at fallback", {"fallback": {"replicas": 6}}, 9, 6, 6, K.FALLBACK, "10 times"),
    ("keeping is clamped", {"minReplicas": 2}, 0, 0, 2, K.PROBE_FAILED, "0 -> 2"),
]


@pytest.mark.parametrize(
    ("overrides", "failures", "current", "desired", "kind", "reason"),
    [c[1:] for c in FALLBACK_CASES],
    ids=[c[0] for c in FALLBACK_CASES],
)
def test_probe_failures(
    overrides: dict[str, Any],
    failures: int,
    current: int,
    desired: int,
    kind: policy.DecisionKind,
    reason: str,
) -> None:
    d = policy.decide(
        scaling(**overrides),
        None,
        current,
        policy.PolicyState(failures=failures),
        NOW,
        paused=False,
        concurrency=10,
    )
    assert (d.desired, d.kind) == (desired, kind)
    assert reason in d.reason
    assert d.state.failures == failures + 1


def test_a_successful_probe_resets_the_failure_count() -> None:
    d = policy.decide(
        scaling(), obs(waiting=10), 1, policy.PolicyState(failures=7), NOW, paused=False, concurrency=10
    )
    assert d.state.failures == 0


def test_paused_with_a_failed_probe_keeps_current() -> None:
    d = policy.decide(scaling(), None, 3, policy.PolicyState(), NOW, paused=True, concurrency=10)
    assert (d.desired, d.kind, d.reason) == (3, K.PAUSED, "paused: keeping 3")


def test_the_call_of_earlier_versions_still_works() -> None:
    """Positional scaling, observation, current, state, now; paused and concurrency by keyword."""
    d = policy.decide(scaling(), obs(waiting=100), 1, policy.PolicyState(), NOW, paused=False, concurrency=10)
    assert d.desired == 2 and isinstance(d.state, policy.PolicyState)


def test_largest_target_wins() -> None:
    s = scaling(targets={"maxOldestAge": 30, "backlogPerReplica": 10}, scaleUp={"maxStepPerPeriod": 100})
    d = policy.decide(s, obs(waiting=200), 1, state(arrival=1.0), NOW, paused=False, concurrency=10)
    assert (d.desired, d.kind) == (20, K.SCALE_UP_BACKLOG)  # 200 / 10 beats the age target
    assert d.reason.startswith("1 -> 20: need 20.00 = (200 ready + 0 running) / backlogPerReplica 10")


def test_a_steady_scale_up_that_undoes_a_scale_down_widens_the_band() -> None:
    s = scaling(targets=AGE, maxReplicas=100)
    remembered = state(arrival=200.0, scale_events=((NOW - 100, -4),))
    observation = obs(waiting=300, oldest_ready_age_s=6.0, workers=pods(10, 10), active=100)
    d = policy.decide(s, observation, 10, remembered, NOW, paused=False, concurrency=10)
    assert d.kind == K.SCALE_UP_AGE and not d.reason.count("beyond"), d.reason
    learned = d.state.memory.learned_band
    assert learned == pytest.approx(min(s.scale_down.tolerance, (d.desired - 10) / 10))
    assert stabilization.hysteresis(d.state.memory, s.scale_down, NOW) >= learned


def test_scale_ups_are_remembered_to_time_the_pods_start_up() -> None:
    d = policy.decide(scaling(), obs(waiting=500), 2, state(), NOW, paused=False, concurrency=10)
    assert d.state.rates.pending == ((NOW, d.desired),)


def test_window_history_stays_short() -> None:
    s = scaling(scaleDown={"stabilizationWindowSeconds": 3600})
    remembered = policy.PolicyState()
    for i in range(3000):
        d = policy.decide(
            s, obs(waiting=30_000 - 2 * i), 20, remembered, NOW + i, paused=False, concurrency=10
        )
        remembered = d.state
    assert len(remembered.memory.recommendations) <= 64 + 1
    assert remembered.memory.recommendations[0][1] == pytest.approx(30_000 / 50, rel=0.01)
