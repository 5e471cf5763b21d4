"""What a scale-down must remember: the window of steady needs, the recent scale changes, the
hysteresis band and the gaps in the load. Pure, like the policy that owns it.

| memory                | used for                                                                       |
| --------------------- | ------------------------------------------------------------------------------ |
| ``recommendations``   | the highest steady need within stabilizationWindowSeconds (kept short: only   |
|                       | needs that can still be the highest, merged into 64 buckets of the window)    |
| ``scale_events``      | the scaleUp and scaleDown step limits, and which scale-ups undid a scale-down  |
| ``watching_since``    | no scale-down before a whole window was watched (a new JobQueue, a restart of |
|                       | an older operator whose state lacks the window)                                |
| ``steady_up_at``      | the band is ``tolerance`` after a steady scale-up and halves every window     |
| ``learned_band``      | a scale-up that undid a recent scale-down widens the band by what came back;  |
|                       | it halves every ``LEARNED_HALF_LIFE_S``                                        |
| ``quiet_since/gaps``  | how long the load stopped (no arrival, nothing waiting) before it came back:  |
|                       | when the last gaps all outlasted the window, a quiet queue does not hold it   |
| ``spread``            | how much a need counted from the queue as it is (backlogPerReplica) moves    |
|                       | from poll to poll: the band stays wider than that noise                        |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from jobqueue_operator import rates, spec

# The narrowest hysteresis band of a scale-down. The window's peak of a 30 s average already sits
# above the mean by the load's noise; this keeps a smaller fleet clear of the next noisy up-crossing.
MIN_BAND = 0.05
# The band is at least this many times the poll-to-poll variation of a need counted from the queue
# as it is (an EWMA over SPREAD_TIME_CONSTANT_S of the relative change, each counted up to
# SPREAD_CLIP): one that wobbles by +/-20% keeps a band of about 50%. The age target's need comes
# from averaged rates and a queue it lets stand, so it does not add to this.
NOISE_FACTOR = 4.0
SPREAD_TIME_CONSTANT_S = 60.0
SPREAD_CLIP = 0.5
# A steady scale-up within this many stabilization windows of a scale-down undoes it.
REGRET_WINDOWS = 5
# The learned band halves over this many seconds once the load stops undoing scale-downs.
LEARNED_HALF_LIFE_S = 900.0
# Gaps remembered, and how many of the latest must all outlast the window.
GAPS_KEPT = 4
GAPS_LEARNED = 2
_MAX_EVENTS = 256
_WINDOW_BUCKETS = 64


@dataclass(frozen=True)
class Memory:
    """The scale-down's memory (module docstring); times are the caller's ``now``."""

    recommendations: tuple[tuple[float, float], ...] = ()
    scale_events: tuple[tuple[float, int], ...] = ()
    watching_since: float | None = None
    steady_up_at: float | None = None
    learned_band: float = 0.0
    learned_at: float | None = None
    quiet_since: float | None = None
    gaps: tuple[float, ...] = ()
    spread: float = 0.0
    last_need: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [[t, need] for t, need in self.recommendations],
            "scaleEvents": [[t, delta] for t, delta in self.scale_events],
            "watchingSince": self.watching_since,
            "steadyUpAt": self.steady_up_at,
            "learnedBand": self.learned_band,
            "learnedAt": self.learned_at,
            "quietSince": self.quiet_since,
            "quietGaps": list(self.gaps),
            "spread": self.spread,
            "lastNeed": list(self.last_need) if self.last_need is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Memory:
        band = rates.finite(data.get("learnedBand"))
        last = rates.pairs([data.get("lastNeed")], float)
        return cls(
            recommendations=rates.pairs(data.get("recommendations"), float),
            scale_events=rates.pairs(data.get("scaleEvents"), int),
            watching_since=rates.finite(data.get("watchingSince")),
            steady_up_at=rates.finite(data.get("steadyUpAt")),
            learned_band=min(1.0, max(0.0, band or 0.0)),
            learned_at=rates.finite(data.get("learnedAt")),
            quiet_since=rates.finite(data.get("quietSince")),
            gaps=_gaps(data.get("quietGaps")),
            spread=min(SPREAD_CLIP, max(0.0, rates.finite(data.get("spread")) or 0.0)),
            last_need=last[0] if last else None,
        )


def observed(memory: Memory, quiet: bool, now: float) -> Memory:
    """Start watching; track the quiet stretch and, when it ends, remember how long it lasted."""
    quiet_since = (memory.quiet_since if memory.quiet_since is not None else now) if quiet else None
    gaps = memory.gaps
    if memory.quiet_since is not None and quiet_since is None:
        gaps = (*gaps, round(now - memory.quiet_since, 3))[-GAPS_KEPT:]
    watching = memory.watching_since if memory.watching_since is not None else now
    return replace(memory, quiet_since=quiet_since, gaps=gaps, watching_since=watching)


def remember(memory: Memory, now: float, need: float, window: int, raw: float | None = None) -> Memory:
    """Add this poll's steady need to the window; ``raw`` is a need counted from the queue as it is
    (backlogPerReplica's), whose poll-to-poll variation widens the band."""
    kept = [(t, value) for t, value in memory.recommendations if now - t <= window and value > need]
    # Falling needs would all be kept; merge those of one time bucket (1/64 of the window) into the
    # bucket's highest, so the list stays short and a peak outlives its time by less than a bucket.
    bucket = max(1.0, window / _WINDOW_BUCKETS)
    spread, last = memory.spread, memory.last_need
    if raw is not None:
        if last is not None and now > last[0]:
            change = abs(raw - last[1]) / max(raw, last[1]) if max(raw, last[1]) > 0 else 0.0
            spread = rates.ewma(spread, min(SPREAD_CLIP, change), now - last[0], SPREAD_TIME_CONSTANT_S)
        last = (now, round(raw, 4))
    if kept and math.floor(kept[-1][0] / bucket) == math.floor(now / bucket):
        need = kept.pop()[1]
    return replace(
        memory, recommendations=(*kept, (now, round(need, 4))), spread=round(spread, 6), last_need=last
    )


def peak(memory: Memory, now: float, window: int) -> float:
    """The highest steady need within the window."""
    return max((value for t, value in memory.recommendations if now - t <= window), default=0.0)


def watched(memory: Memory, now: float) -> float:
    return now - memory.watching_since if memory.watching_since is not None else 0.0


def long_gaps(memory: Memory, window: int) -> tuple[float, ...]:
    """The last gaps, when the load is quiet now and they all outlasted the window; else ()."""
    learned = memory.gaps[-GAPS_LEARNED:]
    if memory.quiet_since is None or len(learned) < GAPS_LEARNED or min(learned) <= window:
        return ()
    return learned


def hysteresis(memory: Memory, down: spec.ScaleDownSpec, now: float) -> float:
    """The band a scale-down must clear: the widest of ``MIN_BAND``, ``NOISE_FACTOR`` times the need's
    own variation, the learned band, and ``tolerance`` right after a steady scale-up (an urgent one,
    for a backlog, is undone by the backlog's end, not by noise) halved every stabilization window
    since; at most ``cap``."""
    band = max(MIN_BAND, NOISE_FACTOR * memory.spread, learned(memory, now))
    if memory.steady_up_at is not None:
        half_life = max(1.0, float(down.stabilization_window_seconds))
        band = max(band, down.tolerance * math.pow(0.5, max(0.0, now - memory.steady_up_at) / half_life))
    return min(band, cap(down))


def learned(memory: Memory, now: float) -> float:
    if memory.learned_at is None:
        return 0.0
    return memory.learned_band * math.pow(0.5, max(0.0, now - memory.learned_at) / LEARNED_HALF_LIFE_S)


def steady_up(memory: Memory, down: spec.ScaleDownSpec, current: int, desired: int, now: float) -> Memory:
    """A steady scale-up: the tolerance band restarts, and when it undoes a recent scale-down, the
    band learns the part that had to come back (at most ``tolerance``)."""
    memory = replace(memory, steady_up_at=now)
    horizon = REGRET_WINDOWS * max(1, down.stabilization_window_seconds)
    events = [(t, delta) for t, delta in memory.scale_events if now - t <= horizon]
    trough = current
    while events and events[-1][1] > 0:  # the ups since the last scale-down
        trough -= events.pop()[1]
    if not events or trough <= 0:
        return memory
    band = max(learned(memory, now), min(down.tolerance, (desired - trough) / trough))
    return replace(memory, learned_band=round(band, 4), learned_at=now)


def cap(down: spec.ScaleDownSpec) -> float:
    """The widest band ``tolerance`` allows: a smaller fleet keeping that fraction spare at the need,
    tolerance / (1 - tolerance) over it; tolerance 0 means no band."""
    return down.tolerance / (1 - down.tolerance)


def changed(memory: Memory, scaling: spec.ScalingSpec, now: float, delta: int) -> Memory:
    """Record a scale change; events are kept as long as a step limit or the band can use them."""
    horizon = max(
        scaling.scale_up.period_seconds,
        scaling.scale_down.period_seconds,
        REGRET_WINDOWS * scaling.scale_down.stabilization_window_seconds,
    )
    events = tuple((t, d) for t, d in memory.scale_events if now - t < horizon)
    return replace(memory, scale_events=(*events, (now, delta))[-_MAX_EVENTS:])


def added_within(memory: Memory, now: float, seconds: int) -> int:
    return sum(delta for t, delta in memory.scale_events if delta > 0 and now - t < seconds)


def removed_within(memory: Memory, now: float, seconds: int) -> int:
    return -sum(delta for t, delta in memory.scale_events if delta < 0 and now - t < seconds)


def _gaps(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        return ()
    found = (rates.finite(item) for item in value)
    return tuple(gap for gap in found if gap is not None and gap >= 0)[-GAPS_KEPT:]
