"""The schedules' operations (``operations``: run on the async or the blocking client): add, list,
remove, and fire the ticks that are due. Workers fire due ticks on time (``ScheduleRunner``), the
operator's pass fires them too (so a fleet at zero wakes up for its cron job), and the API can:
the fence of ``fire_schedule.lua`` keeps each tick to one enqueue whoever fires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from worker_runtime import operations
from worker_runtime.commands import QueueCommands
from worker_runtime.connection import AsyncClient
from worker_runtime.operations import Operation, Read
from worker_runtime.replies import FireOutcome
from worker_runtime.schedules import MAX_SCHEDULES_PER_POLL, Schedule, ScheduleInfo

log = logging.getLogger("jobqueue.schedules")

# Longest sleep of a worker's schedule runner: a schedule added meanwhile is seen within it.
MAX_WAIT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Fired:
    """One pass over the due ticks: jobs enqueued, ticks skipped as missed, and the ms until the
    next tick stored (None: no schedule)."""

    enqueued: int = 0
    skipped: int = 0
    next_in_ms: int | None = None


def _now_ms(reply: list[bytes]) -> int:
    return int(reply[0]) * 1000 + int(reply[1]) // 1000


def add(commands: QueueCommands, schedules: Iterable[Schedule]) -> Operation[int]:
    """Store each schedule; one already stored as given keeps its next tick. How many changed."""
    (now,) = yield Read([("TIME",)])
    calls = [commands.set_schedule(s.name, s.to_json(), s.next_after(_now_ms(now))) for s in schedules]
    if not calls:
        return 0
    changed: list[bool] = yield calls
    return sum(changed)


def remove(commands: QueueCommands, name: str) -> Operation[bool]:
    removed: bool = yield commands.set_schedule(name, "", 0)
    return removed


def listing(commands: QueueCommands) -> Operation[list[ScheduleInfo]]:
    k = commands.keys
    raw, nexts = yield Read([("HGETALL", k.schedules), ("ZRANGE", k.schedule_next, 0, -1, "WITHSCORES")])
    ticks = {name.decode(): int(float(score)) for name, score in _pairs(nexts)}
    found = []
    for name, text in sorted((n.decode(), t) for n, t in raw.items()):
        try:
            schedule = Schedule.from_json(name, text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("schedule %s of queue %s does not read (%s): left out", name, k.name, exc)
            continue
        found.append(ScheduleInfo(schedule, ticks.get(name)))
    return found


def fire_due(commands: QueueCommands) -> Operation[Fired]:
    """Fire every tick due by the server's clock (one round trip when none is)."""
    k = commands.keys
    now_reply, first = yield Read(
        [("TIME",), ("ZRANGE", k.schedule_next, 0, MAX_SCHEDULES_PER_POLL - 1, "WITHSCORES")]
    )
    now = _now_ms(now_reply)
    due = [(name.decode(), int(float(score))) for name, score in _pairs(first) if float(score) <= now]
    if not due:
        scored = _pairs(first)
        return Fired(next_in_ms=max(0, int(float(scored[0][1])) - now) if scored else None)
    (texts,) = yield Read([("HMGET", k.schedules, *(name for name, _ in due))])
    calls = []
    for (name, tick), text in zip(due, texts, strict=True):
        if text is None:
            continue  # removed meanwhile (its next tick goes with the definition)
        try:
            schedule = Schedule.from_json(name, text)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("schedule %s of queue %s does not read (%s): not fired", name, k.name, exc)
            continue
        enqueue, following = schedule.plan(tick, now)
        calls.append(commands.fire_schedule(schedule, tick, following, enqueue=enqueue))
    if not calls:  # nothing due reads: look again later, not in a loop
        return Fired(next_in_ms=round(MAX_WAIT_SECONDS * 1000))
    outcomes: list[FireOutcome] = yield calls
    # Another tick may be due already (a fast interval, or a run of late ones): come back at once.
    enqueued, skipped = outcomes.count(FireOutcome.ENQUEUED), outcomes.count(FireOutcome.SKIPPED)
    return Fired(enqueued=enqueued, skipped=skipped, next_in_ms=0)


def _pairs(reply: list[Any]) -> list[tuple[bytes, Any]]:
    """(member, score) of a ZRANGE WITHSCORES reply, flat or already paired by the client."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member, score) for member, score in reply]
    return [(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]


class ScheduleRunner:
    """A worker's side task: declare the app's schedules, then fire due ticks on time."""

    def __init__(self, client: AsyncClient, commands: QueueCommands, declared: Iterable[Schedule]) -> None:
        self.client = client
        self.commands = commands
        self.declared = list(declared)

    async def run(self, stop: asyncio.Event) -> None:
        declared = False
        while not stop.is_set():
            wait = MAX_WAIT_SECONDS
            try:
                if not declared:
                    await operations.run_async(self.client, add(self.commands, self.declared))
                    declared = True
                fired = await operations.run_async(self.client, fire_due(self.commands))
                if fired.enqueued:
                    log.info(
                        "queue %s: %d scheduled job(s) enqueued", self.commands.keys.name, fired.enqueued
                    )
                if fired.next_in_ms is not None:
                    wait = min(wait, fired.next_in_ms / 1000)
            except Exception as exc:  # Redis away or a bad reply: the next pass tries again
                log.debug("firing schedules failed: %s", exc)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
            else:
                await asyncio.sleep(0)
