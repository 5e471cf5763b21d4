"""The scaling policy: an observation, remembered state and the time in, desired replicas, a kind and
a reason out.

Pure: no I/O, no clock of its own, nothing imported that does I/O. The reasoning behind every step is
in docs/scaling.md. One call of ``decide`` runs, in order:

| step          | what it does                                                                      |
| ------------- | --------------------------------------------------------------------------------- |
| pause         | paused -> keep the current count (rates are still measured)                       |
| fallback      | probe failed -> keep the count; after failureThreshold, fallback.replicas         |
| measure       | ``rates.measure``: arrival rates, service time (Little's law), pod start-up time  |
| targets       | ``needs.assess``: the largest of backlog per replica, the age target's capacity,  |
|               | and the in-flight jobs; "urgent" when the age target is at risk                   |
| activation    | at zero, wake only for activation.waiting ready jobs (or an aging one), sized    |
|               | from the need                                                                     |
| scale up      | immediately, within the scaleUp step unless the age target is at risk            |
| scale down    | only once the backlog is served, to the window's highest steady need plus a      |
|               | hysteresis band, at most the scaleDown step, never below in-flight work           |
| cooldown      | the last replica goes only after cooldownSeconds without any work                 |
| flow control  | ``flow_bounds``: paused claims keep the count (or go to zero), a running cap or a |
|               | rate limit bounds it by the pods that can do work under it                        |
| clamp         | [minReplicas, maxReplicas]                                                        |

Every decision has a ``kind`` (a ``DecisionKind``: metrics and Events use it) and a ``reason`` that
states the numbers behind it. ``PolicyState.to_dict()`` goes to ``status.policy``;
``PolicyState.from_dict(status.get("policy"))`` brings it back after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from jobqueue_operator import flow_bounds, flow_spec, needs, rates, spec, stabilization
from worker_runtime.observation import QueueObservation


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    NONE = "none"


class DecisionKind(StrEnum):
    """Why the count is what it is: a short, bounded label (the ``reason`` label of the
    ``jobqueue_scale_events_total`` metric, and the first word of the scale Events' message)."""

    PAUSED = "paused"
    PROBE_FAILED = "probe_failed"
    FALLBACK = "fallback"
    IDLE = "idle"
    ACTIVATED = "activated"
    SCALE_UP_AGE = "scale_up_age"
    SCALE_UP_BACKLOG = "scale_up_backlog"
    SCALE_UP_IN_FLIGHT = "scale_up_in_flight"
    SCALE_UP_LIMITED = "scale_up_limited"
    STEADY = "steady"
    WATCHING = "watching"
    HELD_BY_BACKLOG = "held_by_backlog"
    HELD_BY_RISING = "held_by_rising"
    HELD_BY_WINDOW = "held_by_window"
    SCALE_DOWN = "scale_down"
    SCALE_DOWN_LIMITED = "scale_down_limited"
    COOLDOWN = "cooldown"
    SCALE_TO_ZERO = "scale_to_zero"
    AT_MAX = "at_max"
    AT_MIN = "at_min"
    # Flow control holds the queue (flow_bounds): no pod it would leave idle.
    CLAIMS_PAUSED = "claims_paused"
    RATE_LIMITED = "rate_limited"
    CAPPED = "capped"
    # A job name's circuit breaker is open: its parked jobs are no reason to scale.
    BREAKER_OPEN = "breaker_open"


_DRIVERS = {
    "age": DecisionKind.SCALE_UP_AGE,
    "backlog": DecisionKind.SCALE_UP_BACKLOG,
    "in_flight": DecisionKind.SCALE_UP_IN_FLIGHT,
}


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between polls; ``to_dict``/``from_dict`` round-trip via status.policy.

    ``rates`` are timed by the Redis server's clock; ``idle_since`` and the ``memory`` by the
    caller's ``now`` (seconds).
    """

    rates: rates.Rates = field(default_factory=rates.Rates)
    memory: stabilization.Memory = field(default_factory=stabilization.Memory)
    idle_since: float | None = None
    failures: int = 0

    @property
    def throughput(self) -> float | None:
        """Finished jobs per second (status.throughput)."""
        return self.rates.throughput

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for status.policy (flat camelCase keys)."""
        return {
            **self.rates.to_dict(),
            **self.memory.to_dict(),
            "idleSince": self.idle_since,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PolicyState:
        """The state stored by ``to_dict``, or by an older version (what it lacks starts fresh);
        missing or unreadable parts fall back to their defaults."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            rates=rates.Rates.from_dict(data),
            memory=stabilization.Memory.from_dict(data),
            idle_since=rates.finite(data.get("idleSince")),
            failures=max(0, rates.opt(int, data.get("failures")) or 0),
        )


@dataclass(frozen=True)
class Decision:
    """The policy's answer: ``desired`` replicas, its ``kind`` and human ``reason``, the state to keep."""

    desired: int
    reason: str
    state: PolicyState
    direction: Direction
    # What the targets asked for (rounded up) before activation, step limits, window and clamping.
    recommended: int
    kind: DecisionKind
    # The same, unrounded: the number the reason calls "need".
    need: float


@dataclass(frozen=True)
class _Choice:
    desired: int
    kind: DecisionKind
    reason: str


def decide(
    scaling: spec.ScalingSpec,
    observation: QueueObservation | None,
    current_replicas: int,
    state: PolicyState,
    now: float,
    *,
    paused: bool,
    concurrency: int,
    ready_replicas: int | None = None,
    flow: flow_spec.FlowSpec | None = None,
) -> Decision:
    """Desired replicas for one poll. ``observation is None`` means the probe failed.

    ``ready_replicas`` is the count of pods ready and serving when the caller knows it (None: the
    policy counts the pods of the live, non-draining heartbeats). ``flow`` is the spec's flow
    section (its ``whilePaused``); the flow control itself is read from the observation."""
    current = max(0, current_replicas)
    concurrency = max(1, concurrency)
    if observation is None:
        if paused:
            return _paused(current, state)
        return _on_probe_failure(scaling, current, state)
    ready = rates.ready_replicas(observation, ready_replicas)
    state = _observe(state, observation, ready, current, now)
    if paused:
        return _paused(current, state)
    need = needs.assess(scaling, observation, state.rates, ready, current, concurrency, now)
    window = scaling.scale_down.stabilization_window_seconds
    state = replace(state, memory=stabilization.remember(state.memory, now, need.steady, window, need.raw))
    choice = _choose(scaling, observation, current, need, state, now)
    limit = flow_bounds.bound(observation, flow or flow_spec.FlowSpec(), state.rates, concurrency, current)
    choice = _clamp(_breakers(_bounded(choice, limit, current), observation, current), current, scaling)
    memory, measured = state.memory, state.rates
    if choice.desired > current and not need.urgent:
        memory = stabilization.steady_up(memory, scaling.scale_down, current, choice.desired, now)
    if choice.desired != current:
        memory = stabilization.changed(memory, scaling, now, choice.desired - current)
    if choice.desired > current:
        measured = rates.scaled_up(measured, now, choice.desired)
    state = replace(state, memory=memory, rates=measured)
    direction = _direction(current, choice.desired)
    return Decision(
        choice.desired, choice.reason, state, direction, needs.ceil(need.replicas), choice.kind, need.replicas
    )


def _observe(state: PolicyState, obs: QueueObservation, ready: int, current: int, now: float) -> PolicyState:
    known = state.rates.observed_at_ms is not None
    arrived = known and obs.enqueued_total != state.rates.enqueued_total
    moved = arrived or (known and obs.finished_total != state.rates.finished_total)
    quiet = not arrived and needs.ready_jobs(obs) == 0
    return replace(
        state,
        rates=rates.measure(state.rates, obs, ready, current, now),
        memory=stabilization.observed(state.memory, quiet, now),
        idle_since=_idle_since(state, obs, moved, now),
        failures=0,
    )


def _paused(current: int, state: PolicyState) -> Decision:
    reason = f"paused: keeping {current}"
    return Decision(current, reason, state, Direction.NONE, current, DecisionKind.PAUSED, float(current))


def _bounded(choice: _Choice, limit: flow_bounds.Bound | None, current: int) -> _Choice:
    """No more replicas than flow control lets work; a pause decides the count whatever the need."""
    if limit is None:
        return choice
    kind = _LIMITS[limit.limit]
    if limit.limit is flow_bounds.Limit.CLAIMS_PAUSED:
        desired = min(choice.desired, limit.replicas)
    elif choice.desired > limit.replicas:
        desired = limit.replicas
    else:
        return choice
    moved = f"{current} -> {desired}" if desired != current else f"keeping {desired}"
    return _Choice(desired, kind, f"{moved}, {limit.why} (asked for {choice.desired}): {choice.reason}")


def _breakers(choice: _Choice, obs: QueueObservation, current: int) -> _Choice:
    """A count kept while breakers are open says so: their parked jobs (delayed until the
    cool-off ends) are not ready, so no target scales for them."""
    if not obs.breakers or choice.desired != current or choice.kind in _LIMITS.values():
        return choice
    names = ", ".join(f"{b.job} ({b.state})" for b in obs.breakers)
    return _Choice(current, DecisionKind.BREAKER_OPEN, f"keeping {current}, circuit breakers open: {names}; "
                   f"their jobs are parked: {choice.reason}")  # fmt: skip


_LIMITS = {
    flow_bounds.Limit.CLAIMS_PAUSED: DecisionKind.CLAIMS_PAUSED,
    flow_bounds.Limit.RATE_LIMITED: DecisionKind.RATE_LIMITED,
    flow_bounds.Limit.CAPPED: DecisionKind.CAPPED,
}


# ---------------------------------------------------------------------------------- up


def _choose(
    scaling: spec.ScalingSpec,
    obs: QueueObservation,
    current: int,
    need: needs.Need,
    state: PolicyState,
    now: float,
) -> _Choice:
    if current == 0:
        return _activate(scaling, obs, need, state, now)
    idle_for = None if state.idle_since is None else now - state.idle_since
    if idle_for is not None and idle_for >= scaling.cooldown_seconds:
        return _Choice(
            0,
            DecisionKind.SCALE_TO_ZERO,
            f"{current} -> 0: idle for {idle_for:.0f}s >= cooldownSeconds {scaling.cooldown_seconds}",
        )
    target = needs.ceil(need.replicas)
    if target > current and (need.pressing or need.floor > current):
        return _scale_up(scaling, current, target, need, state, now)
    if target > current:
        return _Choice(current, DecisionKind.STEADY, f"steady at {current}: {need.calm}; {need.explanation}")
    return _scale_down(scaling, obs, current, target, need, state, now)


def _activate(
    scaling: spec.ScalingSpec, obs: QueueObservation, need: needs.Need, state: PolicyState, now: float
) -> _Choice:
    ready = needs.ready_jobs(obs)
    threshold = scaling.activation.waiting
    age_target = scaling.targets.max_oldest_age
    aging = age_target is not None and ready > 0 and obs.oldest_ready_age_s >= age_target / 2
    if obs.active == 0 and ready < threshold and not aging:
        return _Choice(0, DecisionKind.IDLE, f"idle at 0: {ready} ready < activation.waiting {threshold}")
    if ready >= threshold:
        why = f"{ready} ready >= activation.waiting {threshold}"
    elif aging:
        why = f"the oldest ready job waited {obs.oldest_ready_age_s:.0f}s, half of maxOldestAge {age_target}s"
    else:
        why = f"{obs.active} jobs running"
    target = max(1, needs.ceil(need.replicas))
    # The first step is sized from the need; only a guess (no service time measured yet) is held to
    # the scaleUp step.
    allowed, limit = _up_limit(scaling.scale_up, 0, state, now)
    desired = target if need.measured or target <= allowed else max(1, allowed, need.floor)
    limited = f", limited by {limit}" if desired < target else ""
    return _Choice(
        desired, DecisionKind.ACTIVATED, f"activated 0 -> {desired} ({why}){limited}: {need.explanation}"
    )


def _up_limit(up: spec.ScaleUpSpec, current: int, state: PolicyState, now: float) -> tuple[int, str]:
    """The most replicas the scaleUp step allows now, and the step in words."""
    added = stabilization.added_within(state.memory, now, up.period_seconds)
    base = max(0, current - added)
    step = max(up.max_step_per_period, math.ceil(base * up.max_step_percent / 100))
    allowed = max(current, base + step)
    words = (
        f"scaleUp to {allowed} (the larger of {up.max_step_per_period} pods and {up.max_step_percent}% of "
        f"{base} per {up.period_seconds}s, {added} added in this period)"
    )
    return allowed, words


def _scale_up(
    scaling: spec.ScalingSpec, current: int, target: int, need: needs.Need, state: PolicyState, now: float
) -> _Choice:
    allowed, limit = _up_limit(scaling.scale_up, current, state, now)
    kind = _DRIVERS[need.driver]
    high = scaling.max_replicas
    capped = f" (maxReplicas; asked for {target})" if target > high >= current else ""
    if capped:
        if high == current:
            return _Choice(
                current,
                DecisionKind.AT_MAX,
                f"at maxReplicas {high} (asked for {target}): {need.explanation}",
            )
        target = high
    if target <= allowed:
        return _Choice(target, kind, f"{current} -> {target}{capped}: {need.explanation}")
    if need.urgent:
        return _Choice(
            target,
            kind,
            f"{current} -> {target}{capped}: {need.explanation}; beyond {limit} because {need.urgency}",
        )
    if need.floor > allowed:
        floor = min(need.floor, max(high, current))
        return _Choice(
            floor,
            DecisionKind.SCALE_UP_IN_FLIGHT,
            f"{current} -> {floor}: {need.in_flight}, beyond {limit}; {need.explanation}",
        )
    moved = f"{current} -> {allowed}" if allowed > current else f"holding {current}"
    return _Choice(allowed, DecisionKind.SCALE_UP_LIMITED, f"{moved}, limited by {limit}: {need.explanation}")


# ---------------------------------------------------------------------------------- down


def _scale_down(
    scaling: spec.ScalingSpec,
    obs: QueueObservation,
    current: int,
    target: int,
    need: needs.Need,
    state: PolicyState,
    now: float,
) -> _Choice:
    if target == current:
        return _Choice(current, DecisionKind.STEADY, f"steady at {current}: {need.explanation}")
    if need.backlog:
        return _Choice(
            current,
            DecisionKind.HELD_BY_BACKLOG,
            f"holding {current} while {needs.ready_jobs(obs)} jobs wait (oldest "
            f"{obs.oldest_ready_age_s:.0f}s), more than it starts in a polling interval; {need.explanation}",
        )
    rising = _rising(state.rates)
    if rising:
        return _Choice(
            current,
            DecisionKind.HELD_BY_RISING,
            f"holding {current}: arrivals are rising ({rising}); {need.explanation}",
        )
    memory, window = state.memory, scaling.scale_down.stabilization_window_seconds
    watched = stabilization.watched(memory, now)
    if watched < window:
        return _Choice(
            current,
            DecisionKind.WATCHING,
            f"holding {current}: watched the queue {watched:.0f}s of the {window}s stabilization window "
            f"before any scale-down; {need.explanation}",
        )
    band = stabilization.hysteresis(memory, scaling.scale_down, now)
    peak = stabilization.peak(memory, now, window)
    held = f"highest steady need in the last {window}s {peak:.2f}, +{band:.0%} hysteresis"
    held += f" = {peak * (1 + band):.2f}"
    gaps = stabilization.long_gaps(memory, window)
    if gaps:
        # Quiet, and the last gaps all outlasted the window: the load will not be back within it.
        peak = 0.0
        held = (
            f"no job arrives, and the last quiet gaps ({', '.join(f'{gap:.0f}s' for gap in gaps)}) "
            f"outlasted the {window}s window"
        )
    # This moment's load, which a window of averages can lag (a rising ramp), takes the same band:
    # the jobs in flight, and the arrivals of the last two intervals (one quiet interval is no drop).
    if need.busy > peak:
        peak = need.busy
        held = f"{need.busy:.2f} replicas busy now, +{band:.0%} hysteresis = {peak * (1 + band):.2f}"
    if need.arriving > peak:
        peak = need.arriving
        held = (
            f"{need.arriving:.2f} replicas for the arrivals of the last two polling intervals, +{band:.0%} "
            f"hysteresis = {peak * (1 + band):.2f}"
        )
    keep = max(target, needs.ceil(peak * (1 + band)))
    if keep >= current:
        return _Choice(current, DecisionKind.HELD_BY_WINDOW, f"holding {current}: {held}; {need.explanation}")
    return _step_down(scaling, current, keep, need, state, now, held)


def _step_down(
    scaling: spec.ScalingSpec,
    current: int,
    keep: int,
    need: needs.Need,
    state: PolicyState,
    now: float,
    held: str,
) -> _Choice:
    down = scaling.scale_down
    desired, kind, note = keep, DecisionKind.SCALE_DOWN, held
    if down.max_step_per_period is not None:
        removed = stabilization.removed_within(state.memory, now, down.period_seconds)
        lowest = max(0, current - down.max_step_per_period + removed)
        if keep < lowest:
            desired, kind = min(current, lowest), DecisionKind.SCALE_DOWN_LIMITED
            note = (
                f"{held}; limited by scaleDown ({down.max_step_per_period} pods per {down.period_seconds}s, "
                f"{removed} removed in this period)"
            )
    if desired == current:
        return _Choice(current, kind, f"holding {current}: {note}; {need.explanation}")
    if desired == 0:
        idle_for = 0.0 if state.idle_since is None else now - state.idle_since
        keeping = (
            f"keeping 1 until idle for cooldownSeconds {scaling.cooldown_seconds} (idle {idle_for:.0f}s)"
        )
        if current == 1:
            return _Choice(1, DecisionKind.COOLDOWN, f"{keeping}; {held}")
        return _Choice(1, DecisionKind.COOLDOWN, f"{current} -> 1: {held}; {keeping}")
    return _Choice(desired, kind, f"{current} -> {desired}: {note}; {need.explanation}")


def _rising(measured: rates.Rates) -> str:
    """Why the load is still rising, or "" when it is not: both of the last two polling intervals
    over the 30 s average by more than ``stabilization.MIN_BAND``."""
    average, recent = measured.arrival_rate, measured.rising_rate
    if average is None or average <= 0 or recent is None or recent <= average * (1 + stabilization.MIN_BAND):
        return ""
    return (
        f"both of the last two polling intervals at {recent:.1f}/s or more, over the 30s average "
        f"{average:.1f}/s by more than {stabilization.MIN_BAND:.0%}"
    )


def _clamp(choice: _Choice, current: int, scaling: spec.ScalingSpec) -> _Choice:
    low, high = scaling.min_replicas, scaling.max_replicas
    if choice.desired > high:
        kind = choice.kind if current < high else DecisionKind.AT_MAX
        if high == current:
            return _Choice(high, kind, f"at maxReplicas {high} (asked for {choice.desired}): {choice.reason}")
        return _Choice(
            high, kind, f"{current} -> {high} (maxReplicas; asked for {choice.desired}): {choice.reason}"
        )
    if choice.desired < low:
        if low == current:
            return _Choice(
                low,
                DecisionKind.AT_MIN,
                f"at minReplicas {low} (asked for {choice.desired}): {choice.reason}",
            )
        return _Choice(
            low,
            DecisionKind.AT_MIN,
            f"{current} -> {low} (minReplicas; asked for {choice.desired}): {choice.reason}",
        )
    return choice


# ---------------------------------------------------------------------------------- probe failures


def _on_probe_failure(scaling: spec.ScalingSpec, current: int, state: PolicyState) -> Decision:
    failures = state.failures + 1
    state = replace(state, failures=failures)
    fallback = scaling.fallback
    keep = min(max(current, scaling.min_replicas), scaling.max_replicas)
    threshold = fallback.failure_threshold
    if failures < threshold or fallback.replicas is None:
        told = (
            f"{failures} of failureThreshold {threshold}"
            if failures < threshold
            else f"{failures} times, no fallback.replicas"
        )
        moved = f"{current} -> {keep}" if keep != current else f"keeping {keep}"
        return Decision(
            keep, f"probe failed ({told}): {moved}", state, _direction(current, keep), keep,
            DecisionKind.PROBE_FAILED, float(keep),
        )  # fmt: skip
    desired = fallback.replicas
    moved = f"{current} -> {desired}" if desired != current else f"keeping {desired}"
    reason = f"probe failed {failures} times (failureThreshold {threshold}): fallback.replicas, {moved}"
    return Decision(
        desired, reason, state, _direction(current, desired), desired, DecisionKind.FALLBACK, float(desired)
    )


def _idle_since(state: PolicyState, obs: QueueObservation, moved: bool, now: float) -> float | None:
    # Busy: anything ready or running, or counters that moved (jobs that came and went between polls).
    if moved or obs.waiting > 0 or obs.active > 0 or obs.oldest_ready_age_s > 0:
        return None
    # Idle now: keep the start of the idle stretch, or start one at this observation.
    return state.idle_since if state.idle_since is not None else now


def _direction(current: int, desired: int) -> Direction:
    if desired > current:
        return Direction.UP
    return Direction.DOWN if desired < current else Direction.NONE
