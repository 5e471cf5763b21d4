"""The scaling policy: an observation, remembered state and the time in, desired replicas and a reason out.

Pure: no I/O, no clock of its own, nothing imported that does I/O. The reasoning behind every step is
in docs/scaling.md. One call of ``decide`` runs, in order:

| step            | what it does                                                                    |
| --------------- | ------------------------------------------------------------------------------- |
| pause           | paused -> keep the current count (rates are still measured)                     |
| fallback        | probe failed -> keep the count; after failureThreshold, fallback.replicas       |
| measure         | arrival rate lambda and per-replica service rate mu, smoothed (EWMA)            |
| targets         | max(backlog per replica, (lambda + B/T) / mu, in-flight jobs / concurrency)     |
| activation      | at zero, wake only for activation.waiting ready jobs (or an aging one)          |
| scale up        | immediately, at most the scaleUp step per period                                |
| scale down      | highest need in the window, only past the tolerance band, at most the step      |
| cooldown        | the last replica goes only after cooldownSeconds without any work               |
| floors, clamp   | never below in-flight work, then [minReplicas, maxReplicas]                     |

``PolicyState.to_dict()`` goes to ``status.policy``; ``PolicyState.from_dict(status.get("policy"))``
brings it back after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

from jobqueue_operator import spec
from worker_runtime.observation import QueueObservation

# Time constant of the rate EWMAs in seconds: long enough to smooth a bursty counter sampled every
# 2 s, short enough that a doubled load shows within half a minute.
RATE_TIME_CONSTANT_S = 30.0
# Slack for ceil() of a float need, so 3.0000000001 replicas reads as 3.
_CEIL_SLACK = 1e-6
# A measured service rate below this (jobs/s per replica) is treated as unknown, not divided by.
_MIN_SERVICE_RATE = 1e-6
_MAX_EVENTS = 256
_WINDOW_BUCKETS = 64

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    NONE = "none"


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between polls; ``to_dict``/``from_dict`` round-trip via status.policy.

    Times in ``idle_since``, ``recommendations`` and ``scale_events`` are the caller's ``now`` (seconds);
    ``observed_at_ms`` is the Redis server clock of the last observation, used only for rates.
    """

    observed_at_ms: int | None = None
    enqueued_total: int = 0
    finished_total: int = 0
    waiting: int = 0
    arrival_rate: float | None = None
    service_rate: float | None = None
    throughput: float | None = None
    idle_since: float | None = None
    failures: int = 0
    # (time, need) pairs with strictly decreasing need: enough to answer "highest need within the
    # window" for any window, and short however long the window is.
    recommendations: tuple[tuple[float, float], ...] = ()
    # (time, replicas added or removed) of the policy's recent changes, for the step limits.
    scale_events: tuple[tuple[float, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for status.policy."""
        return {
            "observedAtMs": self.observed_at_ms,
            "enqueuedTotal": self.enqueued_total,
            "finishedTotal": self.finished_total,
            "waiting": self.waiting,
            "arrivalRate": self.arrival_rate,
            "serviceRate": self.service_rate,
            "throughput": self.throughput,
            "idleSince": self.idle_since,
            "failures": self.failures,
            "recommendations": [[t, need] for t, need in self.recommendations],
            "scaleEvents": [[t, delta] for t, delta in self.scale_events],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PolicyState:
        """The state stored by ``to_dict``; missing or unreadable parts fall back to their defaults."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(
            observed_at_ms=_opt(int, data.get("observedAtMs")),
            enqueued_total=_opt(int, data.get("enqueuedTotal")) or 0,
            finished_total=_opt(int, data.get("finishedTotal")) or 0,
            waiting=_opt(int, data.get("waiting")) or 0,
            arrival_rate=_opt(float, data.get("arrivalRate")),
            service_rate=_opt(float, data.get("serviceRate")),
            throughput=_opt(float, data.get("throughput")),
            idle_since=_opt(float, data.get("idleSince")),
            failures=_opt(int, data.get("failures")) or 0,
            recommendations=_pairs(data.get("recommendations"), float),
            scale_events=_pairs(data.get("scaleEvents"), int),
        )


@dataclass(frozen=True)
class Decision:
    """The policy's answer: ``desired`` replicas, a human-readable ``reason`` and the state to keep."""

    desired: int
    reason: str
    state: PolicyState
    direction: Direction
    # What the targets asked for before activation, step limits, window, cooldown and clamping.
    recommended: int


@dataclass(frozen=True)
class Need:
    """The targets' answer: replicas needed (a float, before rounding) and why."""

    replicas: float
    floor: int
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
) -> Decision:
    """Desired replicas for one poll. ``observation is None`` means the probe failed."""
    current = max(0, current_replicas)
    if observation is not None:
        state = measure(state, observation, current, now)
    if paused:
        return Decision(current, "paused", state, Direction.NONE, current)
    if observation is None:
        return _on_probe_failure(scaling, current, state)
    need = needed_replicas(scaling.targets, observation, state, concurrency)
    state = replace(state, recommendations=_remember(state.recommendations, now, need.replicas, scaling))
    desired, note = _behave(scaling, observation, current, need, state, now)
    desired = _clamp(max(desired, need.floor), scaling)
    if desired != current:
        events = (*_recent(state.scale_events, now, scaling), (now, desired - current))
        state = replace(state, scale_events=events[-_MAX_EVENTS:])
    reason = f"{need.reason}; {note}" if note else need.reason
    return Decision(desired, reason, state, _direction(current, desired), _ceil(need.replicas))


def measure(state: PolicyState, observation: QueueObservation, current: int, now: float) -> PolicyState:
    """Fold one observation into the remembered rates, counters and idle time."""
    obs = observation
    dt = (obs.observed_at_ms - state.observed_at_ms) / 1000 if state.observed_at_ms is not None else 0.0
    arrived = obs.enqueued_total - state.enqueued_total
    finished = obs.finished_total - state.finished_total
    moved = state.observed_at_ms is not None and (arrived != 0 or finished != 0)
    updates: dict[str, Any] = {
        "observed_at_ms": obs.observed_at_ms,
        "enqueued_total": obs.enqueued_total,
        "finished_total": obs.finished_total,
        "waiting": obs.waiting,
        "failures": 0,
        "idle_since": _idle_since(state, obs, moved, now),
    }
    if dt > 0 and arrived >= 0 and finished >= 0:
        updates["arrival_rate"] = _ewma(state.arrival_rate, arrived / dt, dt)
        updates["throughput"] = _ewma(state.throughput, finished / dt, dt)
        running = running_replicas(obs, current)
        # Only a saturated fleet shows its capacity: jobs were waiting at both ends of the interval.
        if running > 0 and state.waiting > 0 and obs.waiting > 0:
            updates["service_rate"] = _ewma(state.service_rate, finished / dt / running, dt)
    return replace(state, **updates)


def needed_replicas(
    targets: spec.ScalingTargets, obs: QueueObservation, state: PolicyState, concurrency: int
) -> Need:
    """The largest of the enabled targets and of what in-flight jobs occupy."""
    ready = ready_jobs(obs)
    floor = math.ceil(obs.active / concurrency)
    candidates = [Need(float(floor), floor, f"{obs.active} jobs in flight need {floor}")]
    if targets.backlog_per_replica is not None:
        per = targets.backlog_per_replica
        value = (ready + obs.active) / per
        reason = f"backlog {ready + obs.active} at {per} per replica: need {_ceil(value)}"
        candidates.append(Need(value, floor, reason))
    if targets.max_oldest_age is not None:
        candidates.append(_age_need(targets.max_oldest_age, obs, state, concurrency, floor))
    return max(candidates, key=lambda need: need.replicas)


def ready_jobs(obs: QueueObservation) -> int:
    """Waiting jobs, counting at least one when a delayed or retried job is due (it has an age)."""
    return max(obs.waiting, 1 if obs.oldest_ready_age_s > 0 else 0)


def running_replicas(obs: QueueObservation, current: int) -> int:
    """Pods that served the last interval: live, non-draining heartbeats, else the current count."""
    pods = {worker.pod or worker.worker_id for worker in obs.workers if not worker.draining}
    return len(pods) if pods else current


def _age_need(target_s: int, obs: QueueObservation, state: PolicyState, concurrency: int, floor: int) -> Need:
    ready = ready_jobs(obs)
    late = (
        f"oldest age {obs.oldest_ready_age_s:.0f}s over target {target_s}s: "
        if obs.oldest_ready_age_s > target_s
        else ""
    )
    mu = state.service_rate
    if mu is None or mu < _MIN_SERVICE_RATE:
        # Capacity unknown (never saw a busy fleet): give every job a slot, the conservative guess.
        value = (ready + obs.active) / concurrency
        return Need(
            value, floor, f"{late}service rate not measured yet, one slot per job: need {_ceil(value)}"
        )
    arrival = state.arrival_rate or 0.0
    value = (arrival + ready / target_s) / mu
    reason = (
        f"{late}need {_ceil(value)} replicas for λ={arrival:.1f}/s, backlog {ready} "
        f"within {target_s}s at μ={mu:.2f}/s per replica"
    )
    return Need(value, floor, reason)


def _behave(
    scaling: spec.ScalingSpec, obs: QueueObservation, current: int, need: Need, state: PolicyState, now: float
) -> tuple[int, str]:
    target = _ceil(need.replicas)
    if current == 0:
        return _activate(scaling, obs, target, state, now)
    idle_for = 0.0 if state.idle_since is None else now - state.idle_since
    if state.idle_since is not None and idle_for >= scaling.cooldown_seconds:
        return 0, f"idle for {idle_for:.0f}s (cooldown {scaling.cooldown_seconds}s): scale to zero"
    if target > current:
        return _scale_up(scaling.scale_up, current, target, state, now)
    if target == current:
        return current, ""
    desired, note = _scale_down(scaling.scale_down, current, state, now)
    if desired == 0:
        return 1, f"cooldown: idle {idle_for:.0f}s of {scaling.cooldown_seconds}s, keeping 1"
    return desired, note


def _activate(
    scaling: spec.ScalingSpec, obs: QueueObservation, target: int, state: PolicyState, now: float
) -> tuple[int, str]:
    ready = ready_jobs(obs)
    threshold = scaling.activation.waiting
    age_target = scaling.targets.max_oldest_age
    aging = age_target is not None and ready > 0 and obs.oldest_ready_age_s >= age_target / 2
    if obs.active == 0 and ready < threshold and not aging:
        return 0, f"idle at zero: {ready} ready < activation {threshold}"
    desired, note = _scale_up(scaling.scale_up, 0, max(target, 1), state, now)
    return max(desired, 1), f"activated from zero ({ready} ready){'; ' + note if note else ''}"


def _scale_up(
    up: spec.ScaleUpSpec, current: int, target: int, state: PolicyState, now: float
) -> tuple[int, str]:
    added = sum(delta for t, delta in state.scale_events if delta > 0 and now - t < up.period_seconds)
    base = max(0, current - added)
    step = max(up.max_step_per_period, math.ceil(base * up.max_step_percent / 100))
    allowed = max(current, base + step)
    if target <= allowed:
        return target, ""
    return allowed, (
        f"scale-up limited to {allowed} ({up.max_step_per_period} pods or "
        f"{up.max_step_percent}% per {up.period_seconds}s)"
    )


def _scale_down(down: spec.ScaleDownSpec, current: int, state: PolicyState, now: float) -> tuple[int, str]:
    peak = _peak(state.recommendations, now, down.stabilization_window_seconds)
    # Hysteresis: shrink only when even the window's peak fits the smaller fleet with spare capacity.
    if _ceil(peak / (1 - down.tolerance)) >= current:
        window = down.stabilization_window_seconds
        return current, f"holding {current}: peak need {peak:.1f} in {window}s window within tolerance"
    desired = _ceil(peak)
    if down.max_step_per_period is None:
        return desired, f"scale down to peak need {peak:.1f} of the last {down.stabilization_window_seconds}s"
    removed = -sum(delta for t, delta in state.scale_events if delta < 0 and now - t < down.period_seconds)
    lowest = min(current, max(0, current + removed - down.max_step_per_period))
    if desired >= lowest:
        return desired, f"scale down to peak need {peak:.1f} of the last {down.stabilization_window_seconds}s"
    return (
        lowest,
        f"scale-down limited to {lowest} ({down.max_step_per_period} pods per {down.period_seconds}s)",
    )


def _on_probe_failure(scaling: spec.ScalingSpec, current: int, state: PolicyState) -> Decision:
    failures = state.failures + 1
    state = replace(state, failures=failures)
    fallback = scaling.fallback
    keep = _clamp(current, scaling)
    if failures < fallback.failure_threshold:
        reason = f"probe failed ({failures}/{fallback.failure_threshold}): keeping {keep}"
        return Decision(keep, reason, state, _direction(current, keep), keep)
    if fallback.replicas is None:
        reason = f"probe failed {failures} times: keeping {keep} (no fallback.replicas)"
        return Decision(keep, reason, state, _direction(current, keep), keep)
    desired = fallback.replicas
    reason = f"probe failed {failures} times: fallback to {desired} replicas"
    return Decision(desired, reason, state, _direction(current, desired), desired)


def _idle_since(state: PolicyState, obs: QueueObservation, moved: bool, now: float) -> float | None:
    # Busy: anything ready or running, or counters that moved (jobs that came and went between polls).
    if moved or obs.waiting > 0 or obs.active > 0 or obs.oldest_ready_age_s > 0:
        return None
    # Idle now: keep the start of the idle stretch, or start one at this observation.
    return state.idle_since if state.idle_since is not None else now


def _remember(
    history: tuple[tuple[float, float], ...], now: float, need: float, scaling: spec.ScalingSpec
) -> tuple[tuple[float, float], ...]:
    window = scaling.scale_down.stabilization_window_seconds
    kept = [(t, value) for t, value in history if now - t <= window and value > need]
    # Falling needs would all be kept; merge those of one time bucket (1/64 of the window) into the
    # bucket's highest, so the list stays short and a peak outlives its time by less than a bucket.
    bucket = max(1.0, window / _WINDOW_BUCKETS)
    if kept and math.floor(kept[-1][0] / bucket) == math.floor(now / bucket):
        need = kept.pop()[1]
    return (*kept, (now, round(need, 4)))


def _peak(history: tuple[tuple[float, float], ...], now: float, window: float) -> float:
    return max((value for t, value in history if now - t <= window), default=0.0)


def _recent(
    events: tuple[tuple[float, int], ...], now: float, scaling: spec.ScalingSpec
) -> tuple[tuple[float, int], ...]:
    horizon = max(scaling.scale_up.period_seconds, scaling.scale_down.period_seconds)
    return tuple((t, delta) for t, delta in events if now - t < horizon)


def _ewma(previous: float | None, sample: float, dt: float) -> float:
    if previous is None:
        return sample
    alpha = 1 - math.exp(-dt / RATE_TIME_CONSTANT_S)
    return previous + alpha * (sample - previous)


def _ceil(value: float) -> int:
    return max(0, math.ceil(value - _CEIL_SLACK))


def _clamp(value: int, scaling: spec.ScalingSpec) -> int:
    return min(max(value, scaling.min_replicas), scaling.max_replicas)


def _direction(current: int, desired: int) -> Direction:
    if desired > current:
        return Direction.UP
    return Direction.DOWN if desired < current else Direction.NONE


def _opt(kind: type[_T], value: Any) -> _T | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return None


def _pairs(value: Any, kind: type[_N]) -> tuple[tuple[float, _N], ...]:
    if not isinstance(value, list):
        return ()
    pairs: list[tuple[float, _N]] = []
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            t, v = _opt(float, item[0]), _opt(kind, item[1])
            if t is not None and v is not None:
                pairs.append((t, v))
    return tuple(pairs)
