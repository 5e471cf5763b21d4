"""What the scaling policy measures between polls: arrival rates, the jobs' service time, pod start-up.

Pure, like the policy: observations in, ``Rates`` out. docs/scaling.md ("Measuring") says why each
estimate is what it is:

| estimate            | how                                                                              |
| ------------------- | -------------------------------------------------------------------------------- |
| arrival rate λ      | enqueued counter delta / seconds, EWMA over 30 s (``arrival_rate``); a rate one |
|                     | interval alone shows counts at most 3 x the average (a batch is in the backlog) |
| recent arrival rates| the same over each of the last two polling intervals (``arrival_last``,          |
|                     | ``arrival_prev``): a surge is confirmed when both were fast, a drop when both    |
|                     | were slow, so one batch or one quiet interval does not count as a new rate        |
| service time W      | Little's law over the jobs in flight: mean in-flight jobs / finished per second, |
|                     | each an EWMA over 60 s of intervals that had work; no queue needed, and it does  |
|                     | not depend on how many pods were ready                                           |
| start-up time       | from a scale-up to the poll that saw that many ready pods (EWMA of samples)      |

Timing is the Redis server's clock (``observed_at_ms``) for rates and the caller's ``now`` for
scale-ups, so neither needs the other's clock to be right. A counter that goes backwards (Redis was
flushed) restarts the counters without a rate sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from worker_runtime.observation import QueueObservation

# Time constant of the arrival-rate EWMA in seconds: long enough to smooth a bursty counter sampled
# every 2 s, short enough that a doubled load shows within half a minute.
RATE_TIME_CONSTANT_S = 30.0
# Time constant of the service-time estimate: service time changes slowly (it is the handlers'), and
# a longer average keeps Little's law unbiased through the transients of a scale change.
SERVICE_TIME_CONSTANT_S = 60.0
# A service time this long is no measurement (a job that runs for days is not what an EWMA of a few
# minutes can see); the policy treats it as unknown.
MAX_SERVICE_S = 86_400.0
# Jobs that finish between two polls are never seen running, so the busy average of a fleet of very
# short jobs decays towards 0 while jobs keep finishing; no job holds a slot for less than a Redis
# round trip, so a shorter service time is read as this one (1/0-like μ overflowed the policy).
MIN_SERVICE_S = 1e-4
# Start-up time assumed until one was measured: a pod whose image is cached starts in 5-15 s.
DEFAULT_STARTUP_S = 15.0
# A scale-up whose pods have not all become ready after this long no longer counts as starting.
STARTUP_GIVE_UP_S = 600.0
_MAX_PENDING = 16
# How many times the average one interval's rate may count before the next interval confirms it.
BATCH_CLIP = 3.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class Rates:
    """The policy's measurements; ``to_dict``/``from_dict`` use flat camelCase keys in status.policy."""

    observed_at_ms: int | None = None
    enqueued_total: int = 0
    finished_total: int = 0
    active: int = 0
    arrival_rate: float | None = None
    arrival_last: float | None = None
    arrival_prev: float | None = None
    # EWMAs of the mean jobs in flight and of finished jobs per second, over intervals with work.
    busy: float | None = None
    finish_rate: float | None = None
    # Finished jobs per second over every interval (status.throughput), EWMA over 30 s.
    throughput: float | None = None
    startup_s: float | None = None
    # Scale-ups whose pods are not all ready yet: (caller's time, replicas asked for).
    pending: tuple[tuple[float, int], ...] = ()

    @property
    def service_time_s(self) -> float | None:
        """Mean seconds a job holds its slot (Little's law); None until jobs were seen finishing."""
        if self.busy is None or self.finish_rate is None or self.busy <= 0 or self.finish_rate <= 0:
            return None
        seconds = max(MIN_SERVICE_S, self.busy / self.finish_rate)
        return seconds if seconds < MAX_SERVICE_S else None

    @property
    def rising_rate(self) -> float | None:
        """The rate both of the last two intervals reached (a surge that is not one batch)."""
        if self.arrival_last is None:
            return None
        return min(self.arrival_last, self.arrival_prev if self.arrival_prev is not None else 0.0)

    @property
    def falling_rate(self) -> float | None:
        """The rate neither of the last two intervals exceeded (a drop that is not one quiet interval)."""
        if self.arrival_last is None:
            return None
        return max(
            self.arrival_last, self.arrival_prev if self.arrival_prev is not None else self.arrival_last
        )

    @property
    def startup_estimate_s(self) -> float:
        return self.startup_s if self.startup_s is not None else DEFAULT_STARTUP_S

    def to_dict(self) -> dict[str, Any]:
        return {
            "observedAtMs": self.observed_at_ms,
            "enqueuedTotal": self.enqueued_total,
            "finishedTotal": self.finished_total,
            "active": self.active,
            "arrivalRate": self.arrival_rate,
            "arrivalLast": self.arrival_last,
            "arrivalPrev": self.arrival_prev,
            "busy": self.busy,
            "finishRate": self.finish_rate,
            "throughput": self.throughput,
            "startupSeconds": self.startup_s,
            "pending": [[t, n] for t, n in self.pending],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rates:
        """Read ``to_dict``'s keys; missing or unreadable ones take their defaults (older versions
        stored a per-replica ``serviceRate`` measured differently: it is not reused)."""
        return cls(
            observed_at_ms=opt(int, data.get("observedAtMs")),
            enqueued_total=opt(int, data.get("enqueuedTotal")) or 0,
            finished_total=opt(int, data.get("finishedTotal")) or 0,
            active=opt(int, data.get("active")) or 0,
            arrival_rate=finite(data.get("arrivalRate")),
            arrival_last=finite(data.get("arrivalLast")),
            arrival_prev=finite(data.get("arrivalPrev")),
            busy=finite(data.get("busy")),
            finish_rate=finite(data.get("finishRate")),
            throughput=finite(data.get("throughput")),
            startup_s=finite(data.get("startupSeconds")),
            pending=pairs(data.get("pending"), int),
        )


def ready_replicas(observation: QueueObservation, explicit: int | None) -> int:
    """Pods ready and serving: the explicit count when the caller has one, else the pods of the live,
    non-draining heartbeats (a worker publishes its heartbeat once it serves)."""
    if explicit is not None:
        return max(0, explicit)
    return len({w.pod or w.worker_id for w in observation.workers if not w.draining})


def measure(rates: Rates, obs: QueueObservation, ready: int, current: int, now: float) -> Rates:
    """Fold one observation into the rates, and the ready count into the start-up measurement."""
    updates: dict[str, Any] = {
        "observed_at_ms": obs.observed_at_ms,
        "enqueued_total": obs.enqueued_total,
        "finished_total": obs.finished_total,
        "active": obs.active,
    }
    updates |= _startup(rates, ready, current, now)
    if rates.observed_at_ms is None:
        return replace(rates, **updates)
    dt = (obs.observed_at_ms - rates.observed_at_ms) / 1000
    arrived = obs.enqueued_total - rates.enqueued_total
    finished = obs.finished_total - rates.finished_total
    if dt <= 0 or arrived < 0 or finished < 0:
        return replace(rates, **updates)
    rate = arrived / dt
    counted = _clipped(rates, rate)
    updates["arrival_rate"] = ewma(rates.arrival_rate, counted, dt, RATE_TIME_CONSTANT_S)
    updates["arrival_prev"] = rates.arrival_last
    updates["arrival_last"] = rate
    updates["throughput"] = ewma(rates.throughput, finished / dt, dt, RATE_TIME_CONSTANT_S)
    busy = (rates.active + obs.active) / 2
    if busy > 0 or finished > 0:
        # Little's law: mean in flight = throughput x service time. Intervals without work say
        # nothing about the service time, so they are skipped rather than averaged in as zeros.
        updates["busy"] = ewma(rates.busy, busy, dt, SERVICE_TIME_CONSTANT_S)
        updates["finish_rate"] = ewma(rates.finish_rate, finished / dt, dt, SERVICE_TIME_CONSTANT_S)
    return replace(rates, **updates)


def _clipped(rates: Rates, rate: float) -> float:
    """A rate seen in one interval only (a batch enqueued at once) counts at most ``BATCH_CLIP`` times
    the average; one the previous interval confirms counts in full. The batch itself is in the backlog,
    which the targets size for: counting it as a lasting rate too would size for it twice."""
    average, last = rates.arrival_rate, rates.arrival_last
    if average is None or last is None:
        return rate
    return min(rate, max(BATCH_CLIP * average, last))


def scaled_up(rates: Rates, now: float, desired: int) -> Rates:
    """Remember a scale-up to ``desired`` replicas at ``now``, to time how long its pods take."""
    return replace(rates, pending=(*rates.pending, (now, desired))[-_MAX_PENDING:])


def landing_times(rates: Rates, ready: int, current: int, now: float) -> list[tuple[float, int]]:
    """(seconds from now, replicas ready by then) for the pods still starting, earliest first."""
    startup = rates.startup_estimate_s
    steps: list[tuple[float, int]] = []
    for asked_at, target in rates.pending:
        count = min(target, current)
        if count > ready:
            steps.append((max(0.0, asked_at + startup - now), count))
    if current > ready and not steps:
        steps.append((0.0, current))  # pods we did not ask for (or late ones): assume they come now
    steps.sort()
    return steps


def _startup(rates: Rates, ready: int, current: int, now: float) -> dict[str, Any]:
    if not rates.pending:
        return {}
    startup = rates.startup_s
    kept: list[tuple[float, int]] = []
    for asked_at, target in rates.pending:
        if ready >= target:
            # Every pod of that scale-up serves now; seen at this poll, so the sample errs long,
            # by at most a polling interval, which is the safe side.
            startup = ewma(startup, now - asked_at, 1.0, 1.0)
        elif target <= current and now - asked_at < STARTUP_GIVE_UP_S:
            kept.append((asked_at, target))
    return {"pending": tuple(kept), "startup_s": startup}


def ewma(previous: float | None, sample: float, dt: float, time_constant: float) -> float:
    """Exponentially weighted moving average for samples ``dt`` seconds apart."""
    if previous is None:
        return sample
    alpha = 1 - math.exp(-dt / time_constant)
    return previous + alpha * (sample - previous)


def opt(kind: type[_T], value: Any) -> _T | None:
    """``kind(value)``, or None when the value is missing or unreadable (booleans are not numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError, OverflowError):
        return None


def pairs(value: Any, kind: type[_T]) -> tuple[tuple[float, _T], ...]:
    """A stored list of ``[time, value]`` pairs; unreadable items are dropped."""
    if not isinstance(value, list):
        return ()
    found: list[tuple[float, _T]] = []
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            t, v = finite(item[0]), opt(kind, item[1])
            if t is not None and v is not None:
                found.append((t, v))
    return tuple(found)


def finite(value: Any) -> float | None:
    """A stored float, or None when it is missing, unreadable or not finite."""
    number = opt(float, value)
    return number if number is not None and math.isfinite(number) else None
