"""Arrival traces for the simulator: seven synthetic shapes, job-time distributions, recorded traces.

Pure: recorded traces are parsed from text the caller read. Every shape is sized by ``base``, the base
arrival rate in jobs per second, and runs a five-minute warm-up at that rate before its measured window,
so the policy starts each shape with its rates measured (``idle-burst`` then goes idle first).

| shape       | measured window                                                                     |
| ----------- | ----------------------------------------------------------------------------------- |
| step        | 30 min: 5 min at base, then 3 x base                                                |
| spike       | 30 min at base, with 90 s at 6 x base after 10 min                                  |
| ramp        | 40 min: 5 min at base, up to 5 x over 10 min, 5 min there, down over 10 min, base   |
| diurnal     | 40 min: base x (3 - 2 cos), two periods of 20 min (base to 5 x base)                |
| bursts      | 30 min: nothing, but bursts of 60 s at 5 x base separated by gaps of 2.5-3.5 min    |
| idle-burst  | 30 min: 10 min idle (the fleet cools to zero), 10 x base jobs at once and 3 min at  |
|             | 5 x base, then idle                                                                 |
| noisy       | 30 min at base x U(0.7, 1.3), a new factor every 10 s                               |

Within each second the rate is constant and arrivals are Poisson.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from jobqueue_operator.simulate import model

WARMUP_S = 300.0

# (start, end, rate) pieces of a trace: a rate in jobs/s over [start, end), and batches (time, count).
Pieces = list[tuple[float, float, float]]
Batches = list[tuple[float, int]]


class TraceError(ValueError):
    """A trace or a distribution that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class JobTimes:
    """Service-time distribution of the jobs: ``lognormal`` (mean, sigma), ``exponential`` or ``constant``."""

    kind: str
    mean: float
    sigma: float = 1.0

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        mean = self.mean
        if self.kind == "constant":
            return lambda: mean
        if self.kind == "exponential":
            rate = 1 / mean
            return lambda: rng.expovariate(rate)
        mu = math.log(mean) - self.sigma**2 / 2
        sigma = self.sigma
        return lambda: rng.lognormvariate(mu, sigma)

    def __str__(self) -> str:
        if self.kind == "lognormal":
            return f"lognormal:{self.mean:g}:{self.sigma:g}"
        return f"{self.kind}:{self.mean:g}"


def parse_job_times(text: str) -> JobTimes:
    """``lognormal:MEAN[:SIGMA]``, ``exponential:MEAN`` (or ``exp``), ``constant:SECONDS`` (or ``const``)."""
    name, _, rest = text.strip().partition(":")
    kinds = {"lognormal": "lognormal", "exponential": "exponential", "exp": "exponential"}
    kinds |= {"constant": "constant", "const": "constant"}
    kind = kinds.get(name.lower())
    try:
        numbers = [float(part) for part in rest.split(":")] if rest else []
    except ValueError:
        numbers = []
    allowed = 2 if kind == "lognormal" else 1
    if (
        kind is None
        or not 1 <= len(numbers) <= allowed
        or not all(n > 0 and math.isfinite(n) for n in numbers)
    ):
        raise TraceError(
            f"--job-seconds {text!r}: expected lognormal:MEAN[:SIGMA], exponential:MEAN or constant:SECONDS "
            "with positive numbers"
        )
    return JobTimes(kind, *numbers)


# ---------------------------------------------------------------------------------- shapes


def _step(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    return [(0, w + 300, base), (w + 300, w + 1800, 3 * base)], [], w + 1800


def _spike(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    return [(0, w + 600, base), (w + 600, w + 690, 6 * base), (w + 690, w + 1800, base)], [], w + 1800


def _ramp(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    pieces: Pieces = [(0, w + 300, base)]
    for second in range(600):
        pieces.append((w + 300 + second, w + 301 + second, base * (1 + 4 * (second + 0.5) / 600)))
    pieces.append((w + 900, w + 1200, 5 * base))
    for second in range(600):
        pieces.append((w + 1200 + second, w + 1201 + second, base * (5 - 4 * (second + 0.5) / 600)))
    pieces.append((w + 1800, w + 2400, base))
    return pieces, [], w + 2400


def _diurnal(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    pieces: Pieces = [(0, w, base)]
    for second in range(2400):
        phase = 2 * math.pi * (second + 0.5) / 1200
        pieces.append((w + second, w + second + 1, base * (3 - 2 * math.cos(phase))))
    return pieces, [], w + 2400


def _bursts(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    pieces: Pieces = [(0, w, base)]
    t = w + rng.uniform(150, 210)
    while t + 60 <= w + 1800:
        pieces.append((t, t + 60, 5 * base))
        t += 60 + rng.uniform(150, 210)
    return pieces, [], w + 1800


def _idle_burst(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    burst = w + 600
    return [(0, w, base), (burst, burst + 180, 5 * base)], [(burst, round(10 * base))], w + 1800


def _noisy(base: float, rng: random.Random) -> tuple[Pieces, Batches, float]:
    w = WARMUP_S
    pieces: Pieces = [(0, w, base)]
    for start in range(0, 1800, 10):
        pieces.append((w + start, w + start + 10, base * rng.uniform(0.7, 1.3)))
    return pieces, [], w + 1800


SHAPES: dict[str, Callable[[float, random.Random], tuple[Pieces, Batches, float]]] = {
    "step": _step,
    "spike": _spike,
    "ramp": _ramp,
    "diurnal": _diurnal,
    "bursts": _bursts,
    "idle-burst": _idle_burst,
    "noisy": _noisy,
}


def shape(
    name: str, base: float, job_times: JobTimes, seed: int, *, max_job_s: float = math.inf
) -> model.Workload:
    """The named synthetic shape at ``base`` jobs/s, with its job times drawn from ``job_times``."""
    if name not in SHAPES:
        raise TraceError(f"unknown trace {name!r}; the shapes are {', '.join(SHAPES)} (or give a file)")
    rng = random.Random(f"{name}-{seed}")
    pieces, batches, end = SHAPES[name](base, rng)
    arrivals = poisson_arrivals(pieces, batches, rng)
    return workload(name, arrivals, job_times, seed, WARMUP_S, end, max_job_s=max_job_s)


def poisson_arrivals(pieces: Pieces, batches: Batches, rng: random.Random) -> list[float]:
    """Arrival times of Poisson arrivals at each piece's rate, plus the batches, sorted."""
    times: list[float] = []
    for start, end, rate in pieces:
        if rate <= 0:
            continue
        t = start + rng.expovariate(rate)
        while t < end:
            times.append(t)
            t += rng.expovariate(rate)
    for at, count in batches:
        times.extend([at] * count)
    times.sort()
    return times


def workload(
    name: str,
    arrivals: Sequence[float],
    job_times: JobTimes,
    seed: int,
    start: float,
    end: float,
    *,
    max_job_s: float = math.inf,
) -> model.Workload:
    """The arrivals with a service time each; a job longer than ``max_job_s`` (the JobQueue's
    jobs.timeoutSeconds) is cut there, as the worker's timeout cuts it."""
    sample = job_times.sampler(random.Random(f"jobs-{name}-{seed}"))
    return model.Workload(name, arrivals, [min(sample(), max_job_s) for _ in arrivals], start, end)


# ---------------------------------------------------------------------------------- recorded traces


def recorded(
    name: str, text: str, job_times: JobTimes, seed: int, *, max_job_s: float = math.inf
) -> model.Workload:
    """A recorded trace: Prometheus JSON, a CSV of arrival timestamps, or a CSV of counter samples.

    | form                        | rows                                                    |
    | --------------------------- | ------------------------------------------------------- |
    | arrival timestamps          | one timestamp per job (Unix seconds or ISO 8601)        |
    | counter samples             | ``timestamp,value`` of a cumulative enqueue counter     |
    | Prometheus JSON             | a query_range answer (``data.result[].values``)         |

    Counter increments are spread uniformly at random over their interval; a counter that goes down
    was reset (the new value counts from zero). The first fifth of the trace (at most five minutes) is
    the warm-up.
    """
    stripped = text.lstrip()
    if not stripped:
        raise TraceError(f"{name}: the trace is empty")
    rng = random.Random(f"trace-{name}-{seed}")
    if stripped.startswith("{"):
        samples = _prometheus_samples(name, stripped)
        arrivals = _from_counter(samples, rng)
    else:
        rows = _csv_rows(name, text)
        if all(len(row) == 1 for row in rows):
            arrivals = sorted(row[0] for row in rows)
            first = arrivals[0]
            arrivals = [t - first for t in arrivals]
        elif all(len(row) == 2 for row in rows):
            arrivals = _from_counter(sorted((row[0], row[1]) for row in rows), rng)
        else:
            raise TraceError(
                f"{name}: expected one column (timestamps) or two (timestamp,counter) in every row"
            )
    if not arrivals:
        raise TraceError(f"{name}: the trace has no arrivals")
    end = max(arrivals[-1], 1.0)
    return workload(name, arrivals, job_times, seed, min(WARMUP_S, end / 5), end, max_job_s=max_job_s)


def _csv_rows(name: str, text: str) -> list[list[float]]:
    rows: list[list[float]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in row if cell.strip()]
        if not cells:
            continue
        try:
            rows.append([_timestamp(cells[0]), *(float(cell) for cell in cells[1:])])
        except ValueError:
            if not rows and number == 1:
                continue  # a header
            raise TraceError(
                f"{name}: line {number}: not a number or timestamp: {','.join(cells)!r}"
            ) from None
    if not rows:
        raise TraceError(f"{name}: no rows with numbers")
    return rows


def _timestamp(cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        return datetime.fromisoformat(cell.replace("Z", "+00:00")).timestamp()
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def _prometheus_samples(name: str, text: str) -> list[tuple[float, float]]:
    try:
        data = json.loads(text)
        series = data["data"]["result"]
        summed: dict[float, float] = {}
        for item in series:
            for ts, value in item.get("values") or [item["value"]]:
                summed[float(ts)] = summed.get(float(ts), 0.0) + float(value)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise TraceError(
            f"{name}: not a Prometheus query_range answer ({type(exc).__name__}: {exc})"
        ) from None
    if len(summed) < 2:
        raise TraceError(f"{name}: a counter needs at least two samples")
    return sorted(summed.items())


def _from_counter(samples: Sequence[tuple[float, float]], rng: random.Random) -> list[float]:
    if len(samples) < 2:
        raise TraceError("a counter needs at least two samples")
    first = samples[0][0]
    arrivals: list[float] = []
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        increase = v1 - v0 if v1 >= v0 else v1
        count = round(increase)
        arrivals.extend(rng.uniform(t0, t1) - first for _ in range(count))
    arrivals.sort()
    return arrivals
