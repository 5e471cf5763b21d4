"""Recurring jobs: a cron expression (``croniter``) or a plain interval, fired exactly once per tick.

A queue's schedules live beside its keys: ``schedules`` (name -> the definition as JSON) and
``schedule_next`` (name -> the next tick, ms). Firing a tick is one script, ``lua/fire_schedule.lua``,
fenced by the tick: it enqueues only if the stored next tick is the one being fired, with the job
id ``<schedule>:<tick ms>``, and stores the following tick in the same step. However many workers
(and the operator) fire a schedule at once, each tick is enqueued once; a tick whose fire lost the
race is simply stale. Ticks are computed here (Python) and handed to the script.

A tick fired within ``MISFIRE_GRACE_SECONDS`` of its time is fired, however late; an older one was
missed (no worker and no operator pass for that long): ``missed="skip"`` drops it, ``"catch_up"``
fires one job for it (not one per missed tick). Either way the next tick is the first one after now.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MISFIRE_GRACE_SECONDS = 60.0
MIN_EVERY_SECONDS = 0.1
MAX_EVERY_SECONDS = 366 * 86_400.0
MAX_SCHEDULES_PER_POLL = 100
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")  # part of the job ids "<name>:<tick>"

Missed = Literal["skip", "catch_up"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Enqueue job ``job`` with ``payload`` (JSON text) on every tick of ``cron`` (in ``tz``) or
    every ``every`` seconds (aligned to the epoch, so every process computes the same ticks)."""

    name: str
    job: str
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    payload: str = "null"
    missed: Missed = "skip"

    def __post_init__(self) -> None:
        check(self)

    def to_json(self) -> str:
        return json.dumps(
            {"job": self.job, "cron": self.cron, "every": self.every, "tz": self.tz,
             "payload": self.payload, "missed": self.missed},
            separators=(",", ":"), sort_keys=True,
        )  # fmt: skip

    @classmethod
    def from_json(cls, name: str, text: str | bytes) -> Schedule:
        data: dict[str, Any] = json.loads(text)
        return cls(name, data["job"], data.get("cron"), data.get("every"), data.get("tz", "UTC"),
                   data.get("payload", "null"), data.get("missed", "skip"))  # fmt: skip

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (epoch ms)."""
        if self.every is not None:
            step = round(self.every * 1000)
            return (ms // step + 1) * step
        assert self.cron is not None
        start = datetime.fromtimestamp(ms / 1000, ZoneInfo(self.tz))
        following = croniter(self.cron, start).get_next(datetime)
        return math.floor(following.astimezone(UTC).timestamp() * 1000)

    def job_id(self, tick_ms: int) -> str:
        return f"{self.name}:{tick_ms}"

    def plan(self, tick_ms: int, now_ms: int) -> tuple[bool, int]:
        """Firing ``tick_ms`` at ``now_ms``: whether to enqueue, and the tick to store next."""
        if now_ms - tick_ms <= MISFIRE_GRACE_SECONDS * 1000:
            return True, self.next_after(tick_ms)
        return self.missed == "catch_up", self.next_after(now_ms)

    def describe(self) -> str:
        when = f"cron {self.cron!r} ({self.tz})" if self.cron is not None else f"every {self.every:g}s"
        return f"{self.job} {when}, missed ticks: {self.missed}"


def check(schedule: Schedule) -> None:
    """Refuse a schedule that cannot fire, naming what is wrong (``ValueError``)."""
    if not isinstance(schedule.name, str) or not _NAME.match(schedule.name):
        raise ValueError(f"schedule name must be 1..100 of A-Z a-z 0-9 . _ -, got {schedule.name!r}")
    if not isinstance(schedule.job, str) or not schedule.job:
        raise ValueError(f"schedule {schedule.name!r}: the job name must be a non-empty string")
    if (schedule.cron is None) == (schedule.every is None):
        raise ValueError(f"schedule {schedule.name!r}: give exactly one of cron and every")
    if schedule.cron is not None:
        check_cron(schedule.cron, f"schedule {schedule.name!r}: ")
    else:
        every = schedule.every
        if (
            isinstance(every, bool)
            or not isinstance(every, (int, float))
            or not MIN_EVERY_SECONDS <= every <= MAX_EVERY_SECONDS
        ):
            raise ValueError(
                f"schedule {schedule.name!r}: every must be seconds in "
                f"[{MIN_EVERY_SECONDS:g}, {MAX_EVERY_SECONDS:.0f}], got {every!r}"
            )
    try:
        ZoneInfo(schedule.tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"schedule {schedule.name!r}: unknown time zone {schedule.tz!r}") from None
    if schedule.missed not in ("skip", "catch_up"):
        raise ValueError(
            f"schedule {schedule.name!r}: missed must be skip or catch_up, got {schedule.missed!r}"
        )
    try:
        json.loads(schedule.payload)
    except (TypeError, ValueError):
        raise ValueError(f"schedule {schedule.name!r}: the payload is not JSON text") from None


def check_cron(expression: object, prefix: str = "") -> None:
    """Refuse what croniter cannot read (five fields, or six with seconds)."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(f"{prefix}not a valid cron expression: {expression!r}")


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A stored schedule and its next tick (None: it has none stored, it fires on its next add)."""

    schedule: Schedule
    next_ms: int | None
