"""The Python twin of each Lua script: one method per script builds its KEYS and ARGV, and the
parser beside it turns the reply into a typed result (``replies``), carried by the ``ScriptCall``.

The producer, the worker and the probe all go through this class, so each script's whole contract
(the header of ``lua/<script>.lua``) is mirrored in exactly one place.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from worker_runtime import flow, replies
from worker_runtime import keys as keyspace
from worker_runtime.job import ClaimedJob, EnqueuedJob, UnreadableJob
from worker_runtime.observation import QueueObservation, WorkerHeartbeat
from worker_runtime.options import JobOptions
from worker_runtime.replies import (
    Ack,
    CancelOutcome,
    ClaimResult,
    ErrorCode,
    FailOutcome,
    FireOutcome,
    Postponed,
    Recovery,
    ReplayOutcome,
)
from worker_runtime.retention import Retention
from worker_runtime.schedules import Schedule
from worker_runtime.schema import CounterField
from worker_runtime.scripts import Script, ScriptCall
from worker_runtime.states import SCHEDULED, STATES, JobState

# Most jobs one claim parks for their group's limit before it answers: bounds a claim's time when
# one group's backlog sits in front of the others (the next claim goes on at once).
GROUP_PARKS_PER_CLAIM = 200


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to be written (see ``Queue.enqueue`` for the checks)."""

    id: str
    name: str
    payload: str
    options: JobOptions

    @property
    def state(self) -> JobState:
        """The state the enqueue scripts give it."""
        return JobState.DELAYED if self.options.delay else JobState.WAITING


class QueueCommands:
    """Builds the script calls of one queue; the transitions into a finished set trim it to
    ``retention`` (``retention.Retention()``'s defaults unless given)."""

    def __init__(self, name: str, *, retention: Retention | None = None) -> None:
        self.keys = keyspace.QueueKeys.for_queue(name)
        self.retention = retention or Retention()
        self._scheduled = [self.keys.of_state(s) for s in SCHEDULED]

    # --- producing -------------------------------------------------------------------------------

    def enqueue(self, job: NewJob) -> ScriptCall[EnqueuedJob]:
        k = self.keys
        return ScriptCall(
            Script.ENQUEUE,
            [k.job(job.id), k.waiting, k.ready_since, k.delayed, k.marker, k.seq, k.counters],
            [job.id, job.name, job.payload, job.options.encoded],
            functools.partial(_parse_enqueue, job.id),
        )

    def enqueue_many(self, jobs: Sequence[NewJob]) -> ScriptCall[list[EnqueuedJob]]:
        k = self.keys
        option_sets: dict[JobOptions, int] = {}
        job_args: list[str | int] = []
        for job in jobs:
            number = option_sets.get(job.options)
            if number is None:
                number = option_sets[job.options] = len(option_sets) + 1
            job_args += (job.id, job.name, job.payload, number)
        return ScriptCall(
            Script.ENQUEUE_MANY,
            [k.waiting, k.ready_since, k.delayed, k.marker, k.seq, k.counters],
            [k.job_prefix, len(jobs), len(option_sets), *(o.encoded for o in option_sets), *job_args],
            functools.partial(_parse_enqueue_many, jobs),
        )

    # --- working ---------------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        count: int,
        lease_ms: int,
        keep_expired: int,
        promote_limit: int = 1000,
        *,
        running: int = 0,
    ) -> ScriptCall[ClaimResult]:
        """``running``: the jobs the worker runs now (a job that must run alone goes only to a
        worker running nothing)."""
        k = self.keys
        return ScriptCall(
            Script.CLAIM,
            [k.waiting, k.ready_since, k.active, k.marker, k.expired, k.counters, k.dead, k.suspects,
             k.isolation, k.flow, k.rate, k.breakers, k.delayed, k.group_held, *self._scheduled],
            [k.job_prefix, worker_id, count, lease_ms, promote_limit, keep_expired, running,
             *self.retention.dead.args(), k.group_waiting_prefix, k.group_rate_prefix, GROUP_PARKS_PER_CLAIM],
            _parse_claim,
        )  # fmt: skip

    def complete(self, job_id: str, token: str, result: str) -> ScriptCall[Ack]:
        k = self.keys
        keep, max_age_ms = self.retention.completed.args()
        return ScriptCall(
            Script.COMPLETE,
            [
                k.job(job_id),
                k.active,
                k.completed,
                k.counters,
                k.flow,
                k.unhold,
                k.breakers,
                k.breaker_fails,
                k.breaker_window,
            ],
            [job_id, token, result, keep, k.job_prefix, max_age_ms],
            replies.ack,
        )

    def fail(
        self,
        job_id: str,
        token: str,
        error: str,
        traceback: str,
        retry_delay_ms: int,
        permanent: bool,
        *,
        attempts: int,
    ) -> ScriptCall[FailOutcome | Ack]:
        """``attempts``: the job's, as the worker resolved them (``options.for_handler``)."""
        k = self.keys
        return ScriptCall(
            Script.FAIL,
            [k.job(job_id), k.active, k.retrying, k.dead, k.counters, k.marker, k.flow, k.unhold, k.breakers,
             k.breaker_fails, k.breaker_window],
            [job_id, token, error, traceback, retry_delay_ms, "1" if permanent else "0",
             *self.retention.dead.args(), k.job_prefix, attempts],
            _parse_fail,
        )  # fmt: skip

    def extend_leases(
        self,
        worker_id: str,
        heartbeat: dict[str, Any],
        leases: Sequence[tuple[str, str]],
        lease_ms: int,
        *,
        isolating: bool = False,
    ) -> ScriptCall[list[bool]]:
        """One call for every running job's lease and the heartbeat (and, ``isolating``, the
        reservation of a job to run alone); the result says, per job, whether the lease is still
        held."""
        k = self.keys
        flat = [part for pair in leases for part in pair]
        return ScriptCall(
            Script.EXTEND_LEASE,
            [k.active, k.workers, k.isolation],
            [lease_ms, k.job_prefix, worker_id, json.dumps(heartbeat), "1" if isolating else "0", *flat],
            _parse_flags,
        )

    def recover_stalled(
        self,
        worker_id: str,
        interval_ms: int,
        stale_worker_ms: int,
        limit: int = 1000,
        *,
        stalls_alone_limit: int = 2,
    ) -> ScriptCall[Recovery]:
        k = self.keys
        return ScriptCall(
            Script.RECOVER_STALLED,
            [k.stalled_check, k.active, k.waiting, k.ready_since, k.dead, k.counters, k.marker, k.workers,
             k.suspects],
            [interval_ms, k.job_prefix, worker_id, limit, stale_worker_ms, *self.retention.dead.args(),
             stalls_alone_limit],
            _parse_recovery,
        )  # fmt: skip

    def postpone(
        self, job_id: str, token: str, delay_ms: int, *, hold_queue: bool
    ) -> ScriptCall[Postponed | Ack]:
        k = self.keys
        return ScriptCall(
            Script.POSTPONE,
            [k.job(job_id), k.active, k.delayed, k.flow],
            [job_id, token, delay_ms, "1" if hold_queue else "0"],
            replies.postponed,
        )

    def release(self, job_id: str, token: str) -> ScriptCall[Ack]:
        k = self.keys
        return ScriptCall(
            Script.RELEASE,
            [k.job(job_id), k.active, k.waiting, k.ready_since, k.marker, k.suspects],
            [job_id, token],
            replies.ack,
        )

    def progress(self, job_id: str, token: str, progress: str) -> ScriptCall[Ack]:
        return ScriptCall(Script.PROGRESS, [self.keys.job(job_id)], [token, progress], replies.ack)

    # --- administering ---------------------------------------------------------------------------

    def replay(self, job_id: str) -> ScriptCall[ReplayOutcome]:
        k = self.keys
        return ScriptCall(
            Script.REPLAY,
            [k.job(job_id), k.dead, k.waiting, k.ready_since, k.marker, k.counters],
            [job_id],
            _parse_replay,
        )

    def cancel(self, job_id: str) -> ScriptCall[CancelOutcome]:
        k = self.keys
        return ScriptCall(
            Script.CANCEL,
            [k.job(job_id), k.waiting, k.ready_since, k.suspects, k.delayed, k.retrying, k.flow],
            [job_id, k.group_waiting_prefix],
            _parse_cancel,
        )

    def purge_dead(
        self, *, batch: int = 500, before_ms: int | None = None, ids: Sequence[str] = ()
    ) -> ScriptCall[int]:
        """Deletes the dead jobs ``ids``, or else the oldest ``batch`` that died by ``before_ms``;
        the result is how many dead jobs were deleted."""
        cutoff = "+inf" if before_ms is None else before_ms
        return ScriptCall(
            Script.PURGE_DEAD, [self.keys.dead], [self.keys.job_prefix, batch, cutoff, *ids], int
        )

    def configure_flow(self, changes: Mapping[str, str]) -> ScriptCall[flow.FlowConfig]:
        """Set (or, with "", delete) fields of the flow hash; the result is the configuration after."""
        k = self.keys
        return ScriptCall(
            Script.CONFIGURE_FLOW,
            [k.flow, k.rate, k.unhold, k.marker, k.workers, k.breakers, k.breaker_fails, k.breaker_window],
            [part for pair in changes.items() for part in pair],
            _parse_flow,
        )

    def set_schedule(self, name: str, definition: str, first_ms: int) -> ScriptCall[bool]:
        """Add or change a schedule (``definition`` "" removes it); True when something changed."""
        k = self.keys
        return ScriptCall(Script.SET_SCHEDULE, [k.schedules, k.schedule_next], [name, definition, first_ms],
                          _parse_flag)  # fmt: skip

    def fire_schedule(
        self, schedule: Schedule, tick_ms: int, next_ms: int, *, enqueue: bool
    ) -> ScriptCall[FireOutcome]:
        k = self.keys
        job_id = schedule.job_id(tick_ms)
        return ScriptCall(
            Script.FIRE_SCHEDULE,
            [k.schedule_next, k.job(job_id), k.waiting, k.ready_since, k.delayed, k.marker, k.seq,
             k.counters],
            [schedule.name, tick_ms, next_ms, "1" if enqueue else "0", job_id, schedule.job, schedule.payload,
             "{}"],
            _parse_fire,
        )  # fmt: skip

    def probe(self) -> ScriptCall[QueueObservation]:
        k = self.keys
        return ScriptCall(
            Script.PROBE,
            [
                k.ready_since,
                k.counters,
                k.workers,
                k.flow,
                k.rate,
                k.schedule_next,
                k.breakers,
                *self._scheduled,
                *(k.of_state(s) for s in STATES),
            ],
            [len(SCHEDULED)],
            functools.partial(_parse_probe, k.name),
        )


# --- reply parsers (each script's header describes the reply) ----------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_enqueue(job_id: str, reply: list[Any]) -> EnqueuedJob:
    created, state = reply
    return EnqueuedJob(job_id, JobState(_text(state)), created=created == 1)


def _parse_enqueue_many(jobs: Sequence[NewJob], reply: list[Any]) -> list[EnqueuedJob]:
    """The bulk script names only the ids that existed already (index, state); the rest are new."""
    existing = {int(reply[i]): JobState(_text(reply[i + 1])) for i in range(0, len(reply), 2)}
    return [
        EnqueuedJob(job.id, existing[i], created=False) if i in existing else EnqueuedJob(job.id, job.state)
        for i, job in enumerate(jobs)
    ]


def _parse_claim(reply: list[Any]) -> ClaimResult:
    next_due, expired, buried, isolate, held, held_ms, parked, *rows = reply
    jobs: list[ClaimedJob] = []
    unreadable: list[UnreadableJob] = []
    for row in rows:
        job = _claimed_job(row)
        (jobs if isinstance(job, ClaimedJob) else unreadable).append(job)  # type: ignore[arg-type]
    return ClaimResult(
        jobs,
        [_text(n) for n in expired],
        None if next_due < 0 else int(next_due),
        buried=[_text(i) for i in buried],
        unreadable=unreadable,
        isolate=isolate == 1,
        held=flow.HOLD_CODES.get(int(held)),
        held_ms=None if held_ms < 0 else int(held_ms),
        parked=int(parked),
    )


def _claimed_job(row: list[Any]) -> ClaimedJob | UnreadableJob:
    """One claimed job; one whose hash does not read is kept apart (with its lease token), so it
    is dead-lettered with the reason and harms no job claimed with it."""
    job_id, name, payload, attempt, opts, ready_at, token, stalls = row
    job_id, token = _text(job_id), _text(token)
    try:
        if name is None:
            raise ValueError("field name is missing")
        try:
            options = JobOptions.decode(opts)
        except Exception as exc:
            raise ValueError(f"the job's options do not read ({type(exc).__name__}: {exc})") from None
        return ClaimedJob(
            id=job_id,
            name=_text(name),
            payload=payload,
            attempt=int(attempt),
            options=options,
            ready_at_ms=int(ready_at),
            token=token,
            stalls=int(stalls),
        )
    except Exception as exc:
        text = (
            f"CorruptJob: {exc}"
            if isinstance(exc, ValueError)
            else f"CorruptJob: {type(exc).__name__}: {exc}"
        )
        return UnreadableJob(job_id, token, "" if name is None else _text(name), text)


def _parse_fail(reply: Any) -> FailOutcome | Ack:
    if ErrorCode.of(reply) is not None:
        return replies.ack(reply)
    return FailOutcome(_text(reply))


def _parse_flag(reply: Any) -> bool:
    return bool(reply == 1)


def _parse_fire(reply: Any) -> FireOutcome:
    if ErrorCode.of(reply) is ErrorCode.STALE_TICK:
        return FireOutcome.STALE
    return FireOutcome.ENQUEUED if reply == 1 else FireOutcome.SKIPPED


def _parse_flags(reply: list[Any]) -> list[bool]:
    return [flag == 1 for flag in reply]


def _parse_recovery(reply: Any) -> Recovery:
    if ErrorCode.of(reply) is ErrorCode.NOT_ELECTED:
        return Recovery(elected=False)
    recovered, dead = reply
    return Recovery(elected=True, recovered=int(recovered), dead_lettered=int(dead))


def _parse_replay(reply: Any) -> ReplayOutcome:
    code = ErrorCode.of(reply)
    if code is None:
        return ReplayOutcome.REPLAYED
    return {ErrorCode.NOT_DEAD: ReplayOutcome.NOT_DEAD, ErrorCode.MISSING_JOB: ReplayOutcome.MISSING}[code]


def _parse_cancel(reply: Any) -> CancelOutcome:
    code = ErrorCode.of(reply)
    if code is None:
        return CancelOutcome.CANCELLED
    return {ErrorCode.NOT_PENDING: CancelOutcome.NOT_PENDING, ErrorCode.MISSING_JOB: CancelOutcome.MISSING}[
        code
    ]


def _parse_flow(reply: list[Any]) -> flow.FlowConfig:
    return flow.FlowConfig.from_hash({name: value.decode() for name, value in _pairs(reply).items()})


def _pairs(flat: list[Any]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def _parse_heartbeat(worker_id: str, raw: bytes) -> WorkerHeartbeat | None:
    try:
        hb = json.loads(raw)
        return WorkerHeartbeat(
            worker_id=worker_id,
            pod=str(hb.get("pod", "")),
            inflight=int(hb.get("inflight", 0)),
            concurrency=int(hb.get("concurrency", 0)),
            seen_ms=int(hb.get("seen_ms", 0)),
            draining=bool(hb.get("draining", False)),
        )
    except (ValueError, TypeError, AttributeError):
        return None  # a malformed entry must not break the probe


def _parse_probe(queue: str, reply: list[Any]) -> QueueObservation:
    now, oldest, depths, raw_counters, raw_workers, raw_flow, rate_used, tick, raw_breakers = reply
    counters = {name: int(value) for name, value in _pairs(raw_counters).items()}
    beats = (_parse_heartbeat(wid, raw) for wid, raw in sorted(_pairs(raw_workers).items()))
    workers = tuple(hb for hb in beats if hb is not None)
    # One field per state, named as the state: a new state needs no new line here.
    by_state = cast(dict[str, Any], {s.value: int(n) for s, n in zip(STATES, depths, strict=True)})
    flow_fields = {name: value.decode() for name, value in _pairs(raw_flow).items()}
    # Jobs parked by their group's limit are waiting jobs too, out of the waiting set.
    group_held = flow.group_parked(flow_fields)
    by_state[JobState.WAITING] += group_held
    return QueueObservation(
        queue=queue,
        observed_at_ms=now,
        oldest_ready_age_s=max(0.0, (now - oldest) / 1000) if oldest >= 0 else 0.0,
        enqueued_total=counters.get(CounterField.ENQUEUED, 0),
        completed_total=counters.get(CounterField.COMPLETED, 0),
        failed_total=counters.get(CounterField.FAILED, 0),
        dead_total=counters.get(CounterField.DEAD, 0),
        expired_total=counters.get(CounterField.EXPIRED, 0),
        workers=workers,
        flow=flow.FlowConfig.from_hash(flow_fields),
        group_held=group_held,
        rate_used=int(rate_used),
        next_schedule_ms=None if int(float(tick)) < 0 else int(float(tick)),
        breakers=flow.parse_breakers({name: value.decode() for name, value in _pairs(raw_breakers).items()}),
        **by_state,
    )
