"""Flow control of a queue: pause, a rate limit on job starts (queue-wide, and per group key given
at enqueue), a cap on jobs running at once and circuit breakers per job name, across every worker
of the queue.

The configuration is the queue's ``flow`` hash in Redis (``FlowField``), beside its other keys, so
every worker and the operator's probe read the same thing; ``lua/configure_flow.lua`` writes it and
``lua/claim.lua`` enforces it. A claim that flow control holds back says why (``Hold``) and for how
long, so a held worker waits instead of spinning.

Plain data, no I/O: the operator's pure policy reads ``FlowConfig`` from observations.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

# Bounds of the configuration: beyond them it is a unit mistake rather than a plan.
MAX_RATE_JOBS = 1_000_000
MIN_RATE_SECONDS = 0.001
MAX_RATE_SECONDS = 86_400.0
MAX_RUNNING = 1_000_000
MAX_BREAKER_FAILURES = 1_000_000
MAX_COOLOFF_SECONDS = 86_400.0
MIN_BREAKER_WINDOW_SECONDS = 1.0
MAX_BREAKER_WINDOW_SECONDS = 86_400.0
MAX_BREAKER_MIN_ATTEMPTS = 1_000_000
DEFAULT_BREAKER_WINDOW_SECONDS = 60.0
DEFAULT_BREAKER_MIN_ATTEMPTS = 10


class FlowField(enum.StrEnum):
    """Fields of ``jq:{queue}:flow``; an absent field is "no such control"."""

    PAUSED = "paused"  # "1": workers claim nothing (enqueue still works)
    RATE_JOBS = "rate_jobs"  # at most this many jobs started per window...
    RATE_MS = "rate_ms"  # ...of this many ms (a fixed window, counted in the ``rate`` key)
    MAX_RUNNING = "max_running"  # at most this many jobs active at once across all workers
    # Present while breakers are configured: a job name's breaker opens after this many failures in
    # a row ("0": never by a run, only by the ratio)...
    BREAKER_FAILURES = "breaker_failures"
    BREAKER_COOLOFF_MS = "breaker_cooloff_ms"  # ...for this long, then lets one job try (half-open)
    BREAKER_RATIO = "breaker_ratio"  # ...or when this share of its attempts failed...
    BREAKER_WINDOW_MS = "breaker_window_ms"  # ...within the last this many ms (a sliding window)...
    BREAKER_MIN_ATTEMPTS = "breaker_min_attempts"  # ...once the window holds at least this many
    GROUP_RATE_JOBS = "group_rate_jobs"  # each group starts at most this many jobs per window...
    GROUP_RATE_MS = "group_rate_ms"  # ...of this many ms (its own fixed window, ``group_rate:<group>``)
    # State, not configuration: waiting jobs held out of ``waiting`` by their group's limit.
    GROUP_PARKED = "group_parked"


# What a breaker writes (``set_breaker`` replaces all of them at once), in ``Breaker``'s field order.
BREAKER_FIELDS = (
    FlowField.BREAKER_FAILURES,
    FlowField.BREAKER_COOLOFF_MS,
    FlowField.BREAKER_RATIO,
    FlowField.BREAKER_WINDOW_MS,
    FlowField.BREAKER_MIN_ATTEMPTS,
)


class Hold(enum.StrEnum):
    """Why a claim started nothing although jobs may be ready (the claim's ``held`` reply)."""

    PAUSED = "paused"
    RATE_LIMITED = "rate_limited"
    CAPPED = "capped"  # max_running jobs are running


HOLD_CODES = {1: Hold.PAUSED, 2: Hold.RATE_LIMITED, 3: Hold.CAPPED}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``jobs`` jobs started per ``seconds`` across every worker of the queue."""

    jobs: int
    seconds: float

    def __post_init__(self) -> None:
        check_rate_limit(self.jobs, self.seconds)

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def window_ms(self) -> int:
        return max(1, round(self.seconds * 1000))


@dataclass(frozen=True, slots=True)
class Breaker:
    """Per job name, its breaker opens after ``failures`` failed attempts in a row, or when at
    least ``failure_ratio`` of its attempts in the last ``window_seconds`` failed (counted once the
    window holds ``min_attempts``); either trigger may be left out (None), not both. Its jobs are
    then parked for ``cooloff_seconds``, and one is let through (half-open): success closes the
    breaker, failure opens it again."""

    failures: int | None
    cooloff_seconds: float
    failure_ratio: float | None = None
    window_seconds: float = DEFAULT_BREAKER_WINDOW_SECONDS
    min_attempts: int = DEFAULT_BREAKER_MIN_ATTEMPTS

    def __post_init__(self) -> None:
        if self.failures is not None and not _int_within(self.failures, 1, MAX_BREAKER_FAILURES):
            raise ValueError(
                f"breaker failures must be None or an integer in [1, {MAX_BREAKER_FAILURES}], "
                f"got {self.failures!r}"
            )
        if not _number_within(self.cooloff_seconds, 0.001, MAX_COOLOFF_SECONDS):
            raise ValueError(
                f"breaker cooloff_seconds must be in [0.001, {MAX_COOLOFF_SECONDS:.0f}], "
                f"got {self.cooloff_seconds!r}"
            )
        ratio = self.failure_ratio
        if ratio is not None and not (_number_within(ratio, 0.0, 1.0) and ratio > 0):
            raise ValueError(f"breaker failure_ratio must be None or a number in (0, 1], got {ratio!r}")
        if not _number_within(self.window_seconds, MIN_BREAKER_WINDOW_SECONDS, MAX_BREAKER_WINDOW_SECONDS):
            raise ValueError(
                f"breaker window_seconds must be in [{MIN_BREAKER_WINDOW_SECONDS:g}, "
                f"{MAX_BREAKER_WINDOW_SECONDS:.0f}], got {self.window_seconds!r}"
            )
        if not _int_within(self.min_attempts, 1, MAX_BREAKER_MIN_ATTEMPTS):
            raise ValueError(
                f"breaker min_attempts must be an integer in [1, {MAX_BREAKER_MIN_ATTEMPTS}], "
                f"got {self.min_attempts!r}"
            )
        if self.failures is None and ratio is None:
            raise ValueError("a breaker needs failures (in a row) or a failure_ratio, or both; got neither")

    @property
    def cooloff_ms(self) -> int:
        return max(1, round(self.cooloff_seconds * 1000))

    @property
    def window_ms(self) -> int:
        return round(self.window_seconds * 1000)

    def fields(self) -> dict[str, str]:
        """Its ``flow`` hash fields ("" for a field to delete)."""
        ratio = self.failure_ratio is not None
        exact = "" if self.failure_ratio is None else repr(float(self.failure_ratio))  # repr: no digit lost
        return {
            FlowField.BREAKER_FAILURES: str(self.failures or 0),
            FlowField.BREAKER_COOLOFF_MS: str(self.cooloff_ms),
            FlowField.BREAKER_RATIO: exact,
            FlowField.BREAKER_WINDOW_MS: str(self.window_ms) if ratio else "",
            FlowField.BREAKER_MIN_ATTEMPTS: str(self.min_attempts) if ratio else "",
        }

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> Breaker | None:
        """The breaker the ``flow`` hash configures; None when it configures none that reads."""
        failures, cooloff, ratio, window, least = (_number(raw.get(name)) for name in BREAKER_FIELDS)
        if failures is None or cooloff is None:
            return None
        run = int(failures) if failures >= 1 else None
        try:
            if ratio is not None and window is not None and least is not None:
                return cls(run, cooloff / 1000, ratio, window / 1000, int(least))
            return cls(run, cooloff / 1000)
        except ValueError:  # as the scripts, which then count towards no breaker
            return None


@dataclass(frozen=True, slots=True)
class BreakerState:
    """An open (or half-open) breaker: ``job``'s claims stop until ``until_ms`` (server clock)."""

    job: str
    state: str  # "open", or "half": one job let through to try
    until_ms: int


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """A queue's flow control; the default is none at all."""

    paused: bool = False
    rate_limit: RateLimit | None = None
    max_running: int | None = None
    breaker: Breaker | None = None
    # Every group (``enqueue(..., group=...)``) starts at most this many jobs per window.
    group_rate_limit: RateLimit | None = None

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> FlowConfig:
        """Read the ``flow`` hash; a field that does not read is ignored (as the claim ignores it)."""
        rate = _rate(raw, FlowField.RATE_JOBS, FlowField.RATE_MS)
        cap = _number(raw.get(FlowField.MAX_RUNNING))
        return cls(
            paused=raw.get(FlowField.PAUSED) == "1",
            rate_limit=rate,
            max_running=int(cap) if cap is not None and cap >= 0 else None,
            breaker=Breaker.from_hash(raw),
            group_rate_limit=_rate(raw, FlowField.GROUP_RATE_JOBS, FlowField.GROUP_RATE_MS),
        )

    def fields(self) -> dict[str, str]:
        """The hash fields this configuration writes ("" for a field to delete)."""
        rate, group = self.rate_limit, self.group_rate_limit
        return {
            FlowField.PAUSED: "1" if self.paused else "",
            FlowField.RATE_JOBS: str(rate.jobs) if rate else "",
            FlowField.RATE_MS: str(rate.window_ms) if rate else "",
            FlowField.MAX_RUNNING: "" if self.max_running is None else str(self.max_running),
            **(self.breaker.fields() if self.breaker else dict.fromkeys(BREAKER_FIELDS, "")),
            FlowField.GROUP_RATE_JOBS: str(group.jobs) if group else "",
            FlowField.GROUP_RATE_MS: str(group.window_ms) if group else "",
        }


def group_parked(raw: Mapping[str, str]) -> int:
    """How many waiting jobs their group's limit holds (the ``flow`` hash's state field)."""
    count = _number(raw.get(FlowField.GROUP_PARKED))
    return max(0, int(count)) if count is not None else 0


def _rate(raw: Mapping[str, str], jobs_field: FlowField, ms_field: FlowField) -> RateLimit | None:
    jobs, window = _number(raw.get(jobs_field)), _number(raw.get(ms_field))
    if (
        jobs is None
        or window is None
        or not 1 <= jobs <= MAX_RATE_JOBS
        or not 1 <= window <= MAX_RATE_SECONDS * 1000
    ):
        return None
    return RateLimit(int(jobs), window / 1000)


def check_rate_limit(jobs: object, seconds: object) -> None:
    """Refuse a rate limit that cannot be meant, naming the value."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= MAX_RATE_JOBS:
        raise ValueError(f"rate limit jobs must be an integer in [1, {MAX_RATE_JOBS}], got {jobs!r}")
    if (
        not isinstance(seconds, (int, float))
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or not MIN_RATE_SECONDS <= seconds <= MAX_RATE_SECONDS
    ):
        bounds = f"[{MIN_RATE_SECONDS}, {MAX_RATE_SECONDS:.0f}]"
        raise ValueError(f"rate limit seconds must be a number in {bounds}, got {seconds!r}")


def check_max_running(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RUNNING:
        raise ValueError(f"max_running must be None or an integer in [0, {MAX_RUNNING}], got {value!r}")


def _int_within(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number_within(value: object, low: float, high: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_breakers(raw: Mapping[str, str]) -> tuple[BreakerState, ...]:
    """The ``breakers`` hash (job name -> "open:<ms>" or "half:<ms>"), by job name."""
    found = []
    for job, value in sorted(raw.items()):
        state, _, until = value.partition(":")
        if state in ("open", "half") and until.isdigit():
            found.append(BreakerState(job, state, int(until)))
    return tuple(found)
