"""Exponential backoff with "equal jitter": half the delay fixed, half random.

Attempt n (1-based, the attempt that just failed) waits ``d = e/2 + U(0, e/2)`` with
``e = min(cap, base * 2^(n-1))``. Half of it being fixed means the delays never shrink from one
retry to the next, while the random half spreads a thundering herd of retries.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0  # seconds before the first retry (before jitter)
    cap: float = 300.0  # no single wait longer than this, in seconds

    def __post_init__(self) -> None:
        for name in ("base", "cap"):
            value = getattr(self, name)
            # Refused here, not when the first retry computes its delay (NaN would compare False).
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"backoff {name} must be a finite number of seconds, got {value!r}")
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"backoff base and cap must be >= 0, got {self.base} and {self.cap}")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay after the given failed attempt."""
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
