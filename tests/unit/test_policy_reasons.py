"""Every decision's reason is true: the numbers it states match the decision and each other.

A platform engineer reads the reason in ``kubectl describe jq``; ``check`` re-does its arithmetic:

| the reason says                                   | checked                                              |
| ------------------------------------------------- | ---------------------------------------------------- |
| ``C -> D`` / holding, steady at, keeping, at ...  | C is the current count, D the decision's             |
| ``need X = (...)``                                | X is the decision's need, and the formula gives X    |
| ``μ M/s per replica (N slots / W s per job)``     | M = N / W, N the concurrency                         |
| ``scaleUp to A (... P pods and Q% of B ..., E``   | A = B + max(P, ceil(B Q / 100)), B = C - E, P, Q the |
| ``added ...)``                                    | spec's                                               |
| ``highest steady need ... X, +Y% hysteresis = Z`` | Z = X (1 + Y%), the window the spec's                |
| ``R jobs in flight ... at N per replica need F``  | F = ceil(R / N)                                      |
| ``idle for Is >= cooldownSeconds S`` / ``(idle I``| S the spec's, I >= S to go to zero, I < S to keep 1 |
| ``probe failed (K of failureThreshold T)``        | K the failures counted, K < T                        |
| ``maxRunning C / concurrency N = P pods``, ``rate | P = ceil(C / N), about R x W / N; no more replicas   |
| limit R/Ss x service time Ws / concurrency N = P``| than P (unless minReplicas)                          |

Every decision kind is reached by the case table of test_policy.py, and hypothesis adds random
specs, observations and states.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jobqueue_operator import policy, spec

from tests.unit import test_policy as cases
from tests.unit.test_policy_properties import observations, scaling_specs, states

K = policy.DecisionKind
NUMBER = r"(-?\d+(?:\.\d+)?)"


def close(a: float, b: float, digits: int = 2) -> bool:
    """Equal up to the rounding of the printed numbers."""
    return math.isclose(a, b, rel_tol=0.02, abs_tol=1.5 * 10**-digits)


def check(
    d: policy.Decision, current: int, scaling: spec.ScalingSpec, concurrency: int, failures: int
) -> None:
    reason = d.reason
    _check_counts(reason, d, current)
    for match in re.finditer(r"need (\d+\.\d\d) = ", reason):
        assert close(float(match.group(1)), d.need), reason
    _check_formulas(reason, concurrency)
    for match in re.finditer(rf"μ {NUMBER}/s per replica \((\d+) slots / {NUMBER}s per job\)", reason):
        mu, slots, service = float(match.group(1)), int(match.group(2)), float(match.group(3))
        assert slots == concurrency and close(mu, slots / service), reason
    up = scaling.scale_up
    pattern = r"scaleUp to (\d+) \(the larger of (\d+) pods and (\d+)% of (\d+) per (\d+)s, (\d+) added"
    for match in re.finditer(pattern, reason):
        allowed, pods, percent, base, period, added = map(int, match.groups())
        assert (pods, percent, period) == (up.max_step_per_period, up.max_step_percent, up.period_seconds)
        assert base == max(0, current - added) and allowed == max(
            current, base + max(pods, math.ceil(base * percent / 100))
        )
    window = scaling.scale_down.stabilization_window_seconds
    for match in re.finditer(rf"in the last (\d+)s {NUMBER}, \+(\d+)% hysteresis = {NUMBER}", reason):
        assert int(match.group(1)) == window, reason
        peak, band, bounded = float(match.group(2)), int(match.group(3)) / 100, float(match.group(4))
        assert math.isclose(bounded, peak * (1 + band), rel_tol=0.01, abs_tol=0.01 + peak * 0.006), reason
    for match in re.finditer(r"(\d+) jobs in flight on serving pods at (\d+) per replica need (\d+)", reason):
        jobs, per, floor = map(int, match.groups())
        assert per == concurrency and floor == math.ceil(jobs / per), reason
    cooldown = scaling.cooldown_seconds
    for match in re.finditer(r"idle for (\d+)s >= cooldownSeconds (\d+)", reason):
        assert int(match.group(2)) == cooldown and int(match.group(1)) >= cooldown, reason
    for match in re.finditer(r"until idle for cooldownSeconds (\d+) \(idle (\d+)s\)", reason):
        assert int(match.group(1)) == cooldown and int(match.group(2)) <= cooldown, reason
    for match in re.finditer(r"maxRunning (\d+) / concurrency (\d+) = (\d+) pods", reason):
        cap, per, bound = map(int, match.groups())
        assert (
            per == concurrency
            and bound == math.ceil(cap / per)
            and d.desired <= max(bound, scaling.min_replicas)
        ), reason
    rate = rf"rate limit (\d+)/{NUMBER}s x service time {NUMBER}s / concurrency (\d+) = (\d+) pods"
    for match in re.finditer(rate, reason):
        jobs, seconds, service = int(match.group(1)), float(match.group(2)), float(match.group(3))
        per, bound = int(match.group(4)), int(match.group(5))
        assert per == concurrency and abs(bound - max(1.0, jobs / seconds * service / per)) <= 1, reason
        assert d.desired <= max(bound, scaling.min_replicas), reason
    for match in re.finditer(r"probe failed \((\d+) of failureThreshold (\d+)\)", reason):
        assert int(match.group(1)) == failures + 1 < int(match.group(2)) == scaling.fallback.failure_threshold


def _check_counts(reason: str, d: policy.Decision, current: int) -> None:
    if d.desired != current:
        assert f"{current} -> {d.desired}" in reason, reason
        return
    kept = (
        f"holding {current}",
        f"steady at {current}",
        f"keeping {current}",
        f"at maxReplicas {current}",
        f"at minReplicas {current}",
        "idle at 0",
    )
    assert any(text in reason for text in kept) or (current == 1 and "keeping 1 until" in reason), reason


def _check_formulas(reason: str, concurrency: int) -> None:
    per = rf"/ μ {NUMBER}/s per replica"
    little = (
        rf"need {NUMBER} = \(λ {NUMBER}/s \+ {NUMBER} waiting by a new pod's start-up in (\d+)s / "
        rf"maxOldestAge (\d+)s\) / {NUMBER} .*?{per}"
    )
    for m in re.finditer(little, reason):
        need, arrival, projected, target, factor, mu = (float(m.group(i)) for i in (1, 2, 3, 5, 6, 7))
        assert close(need, (arrival + projected / target) / factor / mu), reason
    queued = (
        rf"need {NUMBER} = \(λ {NUMBER}/s; the {NUMBER} waiting .*? less than {NUMBER}s of arrivals\) {per}"
    )
    for m in re.finditer(queued, reason):
        need, arrival, projected, seconds, mu = (float(m.group(i)) for i in range(1, 6))
        assert close(need, arrival / mu) and projected <= seconds * arrival * 1.01 + 0.01, reason
    newest = (
        rf"need {NUMBER} = \({NUMBER} waiting by a new pod's start-up in (\d+)s / maxOldestAge (\d+)s\) {per}"
    )
    for m in re.finditer(newest, reason):
        need, projected, target, mu = (float(m.group(i)) for i in (1, 2, 4, 5))
        assert close(need, projected / target / mu), reason
    oldest = (
        rf"need {NUMBER} = \({NUMBER} of the (\d+) waiting now left when .*? in (\d+)s / {NUMBER}s left of "
        rf"maxOldestAge (\d+)s less a tenth\) {per}"
    )
    for m in re.finditer(oldest, reason):
        need, left, waiting, startup, remaining, target, mu = (float(m.group(i)) for i in range(1, 8))
        assert left <= waiting * 1.01 and close(remaining, max(0.9 * target - startup, 1.0), 0), reason
        assert close(need, left / remaining / mu), reason
    for m in re.finditer(
        rf"need {NUMBER} = \((\d+) ready \+ (\d+) running\) / backlogPerReplica (\d+)", reason
    ):
        need, ready, running, per = (float(m.group(i)) for i in range(1, 5))
        assert close(need, (ready + running) / per), reason
    for m in re.finditer(
        rf"need {NUMBER} = \((\d+) ready \+ (\d+) running\) / (\d+) slots per replica", reason
    ):
        need, ready, running, slots = (float(m.group(i)) for i in range(1, 5))
        assert slots == concurrency and close(need, (ready + running) / slots), reason


@pytest.mark.parametrize(
    ("overrides", "fields", "current", "remembered"),
    [c[1:5] for c in cases.CASES],
    ids=[c[0] for c in cases.CASES],
)
def test_the_reasons_of_the_case_table_are_true(
    overrides: dict[str, Any], fields: dict[str, Any], current: int, remembered: policy.PolicyState
) -> None:
    s = cases.scaling(**overrides)
    d = policy.decide(
        s, cases.obs(**fields), current, remembered, cases.NOW, paused=s.paused, concurrency=cases.CONCURRENCY
    )
    check(d, current, s, cases.CONCURRENCY, remembered.failures)


@pytest.mark.parametrize(("overrides", "failures", "current"), [c[1:4] for c in cases.FALLBACK_CASES])
def test_the_reasons_of_probe_failures_are_true(
    overrides: dict[str, Any], failures: int, current: int
) -> None:
    s = cases.scaling(**overrides)
    d = policy.decide(
        s, None, current, policy.PolicyState(failures=failures), cases.NOW, paused=False, concurrency=10
    )
    check(d, current, s, 10, failures)


def test_every_decision_kind_is_reached_by_the_cases() -> None:
    reached = {c[6] for c in cases.CASES} | {c[5] for c in cases.FALLBACK_CASES}
    assert reached == set(policy.DecisionKind)


@settings(max_examples=300, deadline=None)
@given(
    scaling=scaling_specs(),
    observation=st.none() | observations(),
    current=st.integers(0, 500),
    state=states(),
    concurrency=st.integers(1, 100),
)
def test_reasons_are_true_for_any_input(
    scaling: spec.ScalingSpec, observation: Any, current: int, state: policy.PolicyState, concurrency: int
) -> None:
    d = policy.decide(scaling, observation, current, state, cases.NOW, paused=False, concurrency=concurrency)
    check(d, current, scaling, concurrency, state.failures)
