"""The job state machine, written down once: the states, and which script moves a job from which
state to which.

Every state is also the name of the sorted set that holds its jobs (``keys.QueueKeys``), of the
probe's count of them (``QueueObservation``) and of the ``state`` field of the job hash. Each row of
``TRANSITIONS`` is one Lua script (``worker_runtime/lua/<script>.lua``) and the condition under
which it moves a job; ``docs/runtime.md`` quotes ``markdown()``, and an integration test runs every
row against a real redis-server and checks that the table is complete.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from worker_runtime.scripts import Script


class JobState(enum.StrEnum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    RETRYING = "retrying"
    COMPLETED = "completed"
    DEAD = "dead"
    EXPIRED = "expired"


MEANING: dict[JobState, str] = {
    JobState.WAITING: "ready to run, ordered by priority then enqueue order; a suspect (its worker "
    "was lost while running it) runs alone; one whose group used its rate window waits parked, "
    "in order, until the window reopens",
    JobState.DELAYED: "enqueued with a delay that is not yet due",
    JobState.ACTIVE: "claimed by a worker under a lease",
    JobState.RETRYING: "the last attempt failed; a retry is scheduled after its backoff",
    JobState.COMPLETED: "done; kept for lookup (the newest `keep_completed`, 1,000, for "
    "`keep_completed_seconds`, a day, by default)",
    JobState.DEAD: "attempts used up, a permanent error, a job that keeps killing its worker, or "
    "an unusable hash: the dead-letter set (the newest "
    "`keep_dead`, 10,000, for `keep_dead_seconds`, a week, by default)",
    JobState.EXPIRED: "its TTL ran out before it first started; dropped, kept for lookup "
    "(the newest `keep_expired`)",
}

# Every state, in the order the probe counts them.
STATES: tuple[JobState, ...] = tuple(JobState)
# States whose jobs become ready by themselves at a due time (their set's score): the claim
# promotes them to waiting, and the probe counts a due one as ready already.
SCHEDULED: tuple[JobState, ...] = (JobState.DELAYED, JobState.RETRYING)


@dataclass(frozen=True, slots=True)
class Transition:
    """``script`` moves a job from ``source`` to ``target`` ``when`` a condition holds.

    ``None`` as the source is a job that does not exist yet; as the target, a job deleted.
    """

    script: Script
    source: JobState | None
    target: JobState | None
    when: str


_S, _J = Script, JobState
# When retention deletes a finished job (worker_runtime/retention.py).
_KEPT = "more than `keep_{0}` newer {0} jobs, or {0} more than `keep_{0}_seconds` ago"
TRANSITIONS: tuple[Transition, ...] = (
    Transition(_S.ENQUEUE, None, _J.WAITING, "enqueued without a delay"),
    Transition(_S.ENQUEUE, None, _J.DELAYED, "enqueued with a delay"),
    Transition(_S.ENQUEUE_MANY, None, _J.WAITING, "enqueued in bulk without a delay"),
    Transition(_S.ENQUEUE_MANY, None, _J.DELAYED, "enqueued in bulk with a delay"),
    Transition(
        _S.POSTPONE,
        _J.ACTIVE,
        _J.DELAYED,
        "its handler raised RateLimited: it waits, its attempt not counted",
    ),
    Transition(_S.FIRE_SCHEDULE, None, _J.WAITING, "a schedule's tick, enqueued once whoever fires it"),
    Transition(_S.CLAIM, _J.DELAYED, _J.WAITING, "its delay is due (promoted by any claim)"),
    Transition(_S.CLAIM, _J.RETRYING, _J.WAITING, "its retry is due (promoted by any claim)"),
    Transition(_S.CLAIM, _J.WAITING, _J.ACTIVE, "a worker has a free slot (a suspect: an idle one, alone)"),
    Transition(_S.CLAIM, _J.WAITING, _J.EXPIRED, "a worker would start it after its TTL ran out"),
    Transition(
        _S.CLAIM,
        _J.WAITING,
        _J.DELAYED,
        "its job name's circuit breaker is open: parked until the cool-off ends",
    ),
    Transition(_S.CLAIM, _J.WAITING, _J.DEAD, "its hash is missing or garbled (the reason is kept)"),
    Transition(_S.CLAIM, _J.DEAD, None, _KEPT.format("dead")),
    Transition(_S.CLAIM, _J.EXPIRED, None, "more than `keep_expired` newer expired jobs"),
    Transition(_S.COMPLETE, _J.ACTIVE, _J.COMPLETED, "the handler returned"),
    Transition(
        _S.COMPLETE,
        _J.COMPLETED,
        None,
        _KEPT.format("completed"),
    ),
    Transition(_S.FAIL, _J.ACTIVE, _J.RETRYING, "the attempt failed and attempts remain"),
    Transition(_S.FAIL, _J.ACTIVE, _J.DEAD, "the last attempt failed, or the error is permanent"),
    Transition(_S.FAIL, _J.DEAD, None, _KEPT.format("dead")),
    Transition(_S.RELEASE, _J.ACTIVE, _J.WAITING, "its worker stops (attempt not counted)"),
    Transition(
        _S.RECOVER_STALLED,
        _J.ACTIVE,
        _J.WAITING,
        "its lease expired and its worker is silent: a suspect now, attempt not counted",
    ),
    Transition(
        _S.RECOVER_STALLED,
        _J.ACTIVE,
        _J.DEAD,
        "its worker was lost while it ran alone `max_stalls_alone` times",
    ),
    Transition(_S.RECOVER_STALLED, _J.DEAD, None, _KEPT.format("dead")),
    Transition(_S.REPLAY, _J.DEAD, _J.WAITING, "replayed, with fresh attempts"),
    Transition(_S.PURGE_DEAD, _J.DEAD, None, "the dead-letter set is purged"),
    Transition(
        _S.CANCEL, _J.WAITING, None, "cancelled before it started (parked by its group's limit or not)"
    ),
    Transition(_S.CANCEL, _J.DELAYED, None, "cancelled before it was due"),
    Transition(_S.CANCEL, _J.RETRYING, None, "cancelled before its retry"),
)


def markdown() -> str:
    """The two tables docs/runtime.md quotes (a test keeps them equal)."""
    lines = ["| state | meaning |", "| --- | --- |"]
    lines += [f"| `{state}` | {MEANING[state]} |" for state in STATES]
    lines += ["", "| script | from | to | when |", "| --- | --- | --- | --- |"]
    for t in TRANSITIONS:
        source = f"`{t.source}`" if t.source else "(new)"
        target = f"`{t.target}`" if t.target else "(deleted)"
        lines.append(f"| `{t.script}.lua` | {source} | {target} | {t.when} |")
    return "\n".join(lines) + "\n"
