"""The state machine of ``worker_runtime.states`` against a real redis-server.

Every row of ``states.TRANSITIONS`` is driven here: a job is brought into the row's source state
with the real scripts, then the row's script (and only it) runs, and the job must be in the
row's target state. After every step the job must be in exactly the set of its state (and in
``ready_since`` exactly when waiting, in ``suspects`` exactly when waiting after a lost worker),
and its hash may hold only the fields of ``schema.JobField``.
A row without a driver, or a driver without a row, fails the table check.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from tests.support.wait import wait_for
from worker_runtime import scripts
from worker_runtime.commands import NewJob, QueueCommands
from worker_runtime.flow import FlowField
from worker_runtime.options import JobOptions
from worker_runtime.replies import CancelOutcome, FireOutcome, Postponed
from worker_runtime.retention import Keep, Retention
from worker_runtime.schedules import Schedule
from worker_runtime.schema import JobField
from worker_runtime.scripts import Script, ScriptCall
from worker_runtime.states import STATES, TRANSITIONS, JobState, Transition

R = TypeVar("R")
Row = tuple[Script, JobState | None, JobState | None]
WORKER = "worker-a"
LEASE_MS = 60_000


class Lab:
    """One queue, its twins, and a record of the scripts run since ``mark()``."""

    def __init__(self, redis: aioredis.Redis, queue: str) -> None:
        self.redis = redis
        self.commands = QueueCommands(queue)
        self.keys = self.commands.keys
        self.ran: list[Script] = []
        self.before: JobState | None = None

    async def run(self, call: ScriptCall[R]) -> R:
        self.ran.append(call.script)
        return await scripts.run(self.redis, call)

    async def mark(self, job_id: str) -> None:
        """Right before the transition: note the job's state, and record the scripts from here."""
        self.before = await self.where(job_id)
        self.ran = []

    async def where(self, job_id: str) -> JobState | None:
        """The job's state, after checking it is held where that state says."""
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        holders = [s for s in STATES if await self.redis.zscore(self.keys.of_state(s), job_id) is not None]
        if not raw:
            assert holders == [], f"deleted job {job_id} still in {holders}"
            return None
        assert {k.decode() for k in raw} <= set(JobField), f"unlisted job hash fields: {sorted(raw)}"
        state = JobState(raw[b"state"].decode())
        assert holders == [state], f"job in state {state} is held by {holders}"
        ready = await self.redis.zscore(self.keys.ready_since, job_id) is not None
        assert ready == (state is JobState.WAITING)
        # A waiting job whose worker was lost while running it is indexed to run alone, and no other.
        suspect = await self.redis.zscore(self.keys.suspects, job_id) is not None
        assert suspect == (state is JobState.WAITING and int(raw.get(b"stalls", 0)) > 0)
        return state

    async def server_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def after(self, ms: int) -> None:
        """Wait until the server's clock is past ``ms`` (its scripts read the same clock)."""
        await wait_for(lambda: self._past(ms), timeout=5, message=f"server clock past {ms}")

    async def _past(self, ms: int) -> bool:
        return await self.server_ms() > ms

    # --- bringing a job into a state ----------------------------------------------------------

    def new_job(self, **options: Any) -> NewJob:
        opts = JobOptions(attempts=options.pop("attempts", 3), timeout=60, backoff=(0.001, 0.001), **options)
        return NewJob(uuid.uuid4().hex, "job", "null", opts)

    async def waiting(self, **options: Any) -> str:
        return (await self.run(self.commands.enqueue(self.new_job(**options)))).id

    async def active(self, lease_ms: int = LEASE_MS, **options: Any) -> tuple[str, str]:
        job_id = await self.waiting(**options)
        claimed = await self.run(self.commands.claim(WORKER, 1, lease_ms, -1))
        assert [j.id for j in claimed.jobs] == [job_id]
        return job_id, claimed.jobs[0].token

    async def dead(self) -> str:
        job_id, token = await self.active(attempts=1)
        await self.run(self.commands.fail(job_id, token, "E: boom", "", 0, False, attempts=1))
        return job_id

    async def expired(self, keep: int = -1, watch: str | None = None) -> str:
        job_id = await self.waiting(ttl=0.001)
        expires_at = int(await self.redis.hget(self.keys.job(job_id), "expires_at"))  # type: ignore[arg-type]
        await self.after(expires_at)
        await self.mark(watch or job_id)
        claimed = await self.run(self.commands.claim(WORKER, 1, LEASE_MS, keep))
        assert claimed.jobs == [] and claimed.expired == ["job"]
        return job_id

    async def completed(self, keep: int | None = None, watch: str | None = None) -> str:
        """A completed job; with ``keep``, completed under a retention of that many jobs."""
        job_id, token = await self.active()
        await self.mark(watch or job_id)
        commands = self.commands if keep is None else self.keeping(keep)
        await self.run(commands.complete(job_id, token, "null"))
        return job_id

    def keeping(self, count: int) -> QueueCommands:
        """The twins of this queue with a retention of ``count`` completed and dead jobs."""
        keep = Keep(count=count, seconds=3600)
        return QueueCommands(self.keys.name, retention=Retention(completed=keep, dead=keep))

    async def finished_at(self, job_id: str) -> int:
        return int(await self.redis.hget(self.keys.job(job_id), "finished_at"))  # type: ignore[arg-type]


Driver = Callable[[Lab], Awaitable[str]]
DRIVERS: dict[Row, Driver] = {}


def drives(script: Script, source: JobState | None, target: JobState | None) -> Callable[[Driver], Driver]:
    def register(driver: Driver) -> Driver:
        DRIVERS[(script, source, target)] = driver
        return driver

    return register


async def _enqueue(lab: Lab, **options: Any) -> str:
    job = lab.new_job(**options)
    await lab.mark(job.id)
    assert (await lab.run(lab.commands.enqueue(job))).created
    return job.id


async def _enqueue_many(lab: Lab, **options: Any) -> str:
    jobs = [lab.new_job(**options), lab.new_job()]
    await lab.mark(jobs[0].id)
    assert all(j.created for j in await lab.run(lab.commands.enqueue_many(jobs)))
    return jobs[0].id


@drives(Script.ENQUEUE, None, JobState.WAITING)
async def _enqueue_now(lab: Lab) -> str:
    return await _enqueue(lab)


@drives(Script.ENQUEUE, None, JobState.DELAYED)
async def _enqueue_later(lab: Lab) -> str:
    return await _enqueue(lab, delay=60)


@drives(Script.FIRE_SCHEDULE, None, JobState.WAITING)
async def _scheduled(lab: Lab) -> str:
    schedule = Schedule("nightly", "job", every=60)
    assert await lab.run(lab.commands.set_schedule(schedule.name, schedule.to_json(), 60_000))
    job_id = schedule.job_id(60_000)
    await lab.mark(job_id)
    fired = await lab.run(lab.commands.fire_schedule(schedule, 60_000, 120_000, enqueue=True))
    assert fired is FireOutcome.ENQUEUED
    return job_id


@drives(Script.POSTPONE, JobState.ACTIVE, JobState.DELAYED)
async def _postponed(lab: Lab) -> str:
    job_id, token = await lab.active()
    await lab.mark(job_id)
    assert (
        await lab.run(lab.commands.postpone(job_id, token, 60_000, hold_queue=False)) is Postponed.POSTPONED
    )
    assert await lab.redis.hget(lab.keys.job(job_id), "attempts_made") == b"0"
    return job_id


@drives(Script.CLAIM, JobState.WAITING, JobState.DELAYED)
async def _parked(lab: Lab) -> str:
    configure = {FlowField.BREAKER_FAILURES: "1", FlowField.BREAKER_COOLOFF_MS: "60000"}
    await lab.run(lab.commands.configure_flow(configure))
    await lab.redis.hset(lab.keys.breakers, "job", "open:99999999999999")
    job_id = await lab.waiting()
    await lab.mark(job_id)
    claimed = await lab.run(lab.commands.claim(WORKER, 1, LEASE_MS, 10))
    assert claimed.jobs == [] and claimed.parked == 1
    return job_id


@drives(Script.ENQUEUE_MANY, None, JobState.WAITING)
async def _bulk_now(lab: Lab) -> str:
    return await _enqueue_many(lab)


@drives(Script.ENQUEUE_MANY, None, JobState.DELAYED)
async def _bulk_later(lab: Lab) -> str:
    return await _enqueue_many(lab, delay=60)


async def _promote(lab: Lab, job_id: str) -> str:
    """Claims that take nothing (count 0) until the job's due time has come and it is promoted."""
    await lab.mark(job_id)

    async def promoted() -> bool:
        await lab.run(lab.commands.claim(WORKER, 0, LEASE_MS, -1))
        return await lab.where(job_id) is JobState.WAITING

    await wait_for(promoted, timeout=5, message=f"{job_id} promoted")
    return job_id


@drives(Script.CLAIM, JobState.DELAYED, JobState.WAITING)
async def _delay_due(lab: Lab) -> str:
    return await _promote(lab, await lab.waiting(delay=0.02))


@drives(Script.CLAIM, JobState.RETRYING, JobState.WAITING)
async def _retry_due(lab: Lab) -> str:
    job_id, token = await lab.active()
    await lab.run(lab.commands.fail(job_id, token, "E: once", "", 20, False, attempts=3))
    return await _promote(lab, job_id)


@drives(Script.CLAIM, JobState.WAITING, JobState.ACTIVE)
async def _claim(lab: Lab) -> str:
    job_id = await lab.waiting()
    await lab.mark(job_id)
    await lab.run(lab.commands.claim(WORKER, 1, LEASE_MS, -1))
    return job_id


@drives(Script.CLAIM, JobState.WAITING, JobState.EXPIRED)
async def _expire(lab: Lab) -> str:
    return await lab.expired()


@drives(Script.CLAIM, JobState.EXPIRED, None)
async def _expired_retention(lab: Lab) -> str:
    older = await lab.expired()
    await lab.after(await lab.finished_at(older))  # the next one expires strictly later
    await lab.expired(keep=1, watch=older)
    return older


@drives(Script.COMPLETE, JobState.ACTIVE, JobState.COMPLETED)
async def _complete(lab: Lab) -> str:
    return await lab.completed()


@drives(Script.COMPLETE, JobState.COMPLETED, None)
async def _completed_retention(lab: Lab) -> str:
    older = await lab.completed()
    await lab.after(await lab.finished_at(older))
    await lab.completed(keep=1, watch=older)
    return older


async def _act_on_active(lab: Lab, call: Callable[[str, str], ScriptCall[Any]]) -> str:
    """Claim a job, then run ``call(job_id, token)`` as its lease holder."""
    job_id, token = await lab.active()
    await lab.mark(job_id)
    await lab.run(call(job_id, token))
    return job_id


@drives(Script.FAIL, JobState.ACTIVE, JobState.RETRYING)
async def _fail_and_retry(lab: Lab) -> str:
    return await _act_on_active(
        lab, lambda j, t: lab.commands.fail(j, t, "E: once", "", 60_000, False, attempts=3)
    )


@drives(Script.FAIL, JobState.ACTIVE, JobState.DEAD)
async def _fail_for_good(lab: Lab) -> str:
    return await _act_on_active(
        lab, lambda j, t: lab.commands.fail(j, t, "Permanent: no", "", 0, True, attempts=3)
    )


@drives(Script.RELEASE, JobState.ACTIVE, JobState.WAITING)
async def _release(lab: Lab) -> str:
    return await _act_on_active(lab, lab.commands.release)


async def _stall(
    lab: Lab,
    job_id: str,
    stalls_alone_limit: int = 2,
    commands: QueueCommands | None = None,
    watch: str | None = None,
) -> None:
    """Let the 1 ms lease of an active job run out, then recover."""
    expiry = int(await lab.redis.zscore(lab.keys.active, job_id))  # type: ignore[arg-type]
    await lab.after(expiry)
    await lab.mark(watch or job_id)
    call = (commands or lab.commands).recover_stalled(
        "worker-b", 1, 60_000, stalls_alone_limit=stalls_alone_limit
    )
    assert (await lab.run(call)).elected


@drives(Script.RECOVER_STALLED, JobState.ACTIVE, JobState.WAITING)
async def _recover(lab: Lab) -> str:
    job_id, _ = await lab.active(lease_ms=1, attempts=1)  # a lost lease is no attempt: attempts left
    await _stall(lab, job_id)
    return job_id


async def _convict(lab: Lab, commands: QueueCommands | None = None, watch: str | None = None) -> str:
    """A job whose worker is lost, then lost again while it runs alone (the limit set to 1)."""
    job_id, _ = await lab.active(lease_ms=1)
    await _stall(lab, job_id)  # its first loss: it runs alone from now on
    await lab.after(await lab.server_ms())  # the next check is elected: its 1 ms interval is over
    alone = await lab.run(lab.commands.claim(WORKER, 1, 1, -1, running=0))
    assert [j.id for j in alone.jobs] == [job_id] and alone.jobs[0].alone
    await _stall(lab, job_id, stalls_alone_limit=1, commands=commands, watch=watch)
    return job_id


@drives(Script.RECOVER_STALLED, JobState.ACTIVE, JobState.DEAD)
async def _recover_and_convict(lab: Lab) -> str:
    return await _convict(lab)


@drives(Script.CLAIM, JobState.WAITING, JobState.DEAD)
async def _claim_garbage(lab: Lab) -> str:
    job_id = await lab.waiting()
    await lab.redis.hset(lab.keys.job(job_id), "expires_at", "soon")
    await lab.mark(job_id)
    claimed = await lab.run(lab.commands.claim(WORKER, 1, LEASE_MS, -1))
    assert claimed.jobs == [] and claimed.buried == [job_id]
    return job_id


async def _older_dead(lab: Lab) -> str:
    """A dead job, and the server's clock past its death (the next one dies strictly later)."""
    older = await lab.dead()
    await lab.after(await lab.finished_at(older))
    return older


@drives(Script.FAIL, JobState.DEAD, None)
async def _dead_retention_on_failure(lab: Lab) -> str:
    older = await _older_dead(lab)
    job_id, token = await lab.active(attempts=1)
    await lab.mark(older)
    await lab.run(lab.keeping(1).fail(job_id, token, "E: boom", "", 0, False, attempts=1))
    return older


@drives(Script.RECOVER_STALLED, JobState.DEAD, None)
async def _dead_retention_on_recovery(lab: Lab) -> str:
    older = await _older_dead(lab)
    await _convict(lab, commands=lab.keeping(1), watch=older)
    return older


@drives(Script.CLAIM, JobState.DEAD, None)
async def _dead_retention_on_claim(lab: Lab) -> str:
    older = await _older_dead(lab)
    job_id = await lab.waiting()
    await lab.redis.hset(lab.keys.job(job_id), "expires_at", "soon")
    await lab.mark(older)
    claimed = await lab.run(lab.keeping(1).claim(WORKER, 1, LEASE_MS, -1))
    assert claimed.buried == [job_id]
    return older


@drives(Script.REPLAY, JobState.DEAD, JobState.WAITING)
async def _replay(lab: Lab) -> str:
    job_id = await lab.dead()
    await lab.mark(job_id)
    await lab.run(lab.commands.replay(job_id))
    return job_id


@drives(Script.PURGE_DEAD, JobState.DEAD, None)
async def _purge(lab: Lab) -> str:
    job_id = await lab.dead()
    await lab.mark(job_id)
    assert await lab.run(lab.commands.purge_dead()) == 1
    return job_id


async def _cancel(lab: Lab, job_id: str) -> str:
    await lab.mark(job_id)
    assert await lab.run(lab.commands.cancel(job_id)) is CancelOutcome.CANCELLED
    return job_id


@drives(Script.CANCEL, JobState.WAITING, None)
async def _cancel_waiting(lab: Lab) -> str:
    return await _cancel(lab, await lab.waiting())


@drives(Script.CANCEL, JobState.DELAYED, None)
async def _cancel_delayed(lab: Lab) -> str:
    return await _cancel(lab, (await lab.run(lab.commands.enqueue(lab.new_job(delay=60)))).id)


@drives(Script.CANCEL, JobState.RETRYING, None)
async def _cancel_retrying(lab: Lab) -> str:
    job_id, token = await lab.active()
    await lab.run(lab.commands.fail(job_id, token, "E: once", "", 60_000, False, attempts=3))
    return await _cancel(lab, job_id)


def test_every_transition_has_a_driver_and_every_driver_a_row() -> None:
    rows = [(t.script, t.source, t.target) for t in TRANSITIONS]
    assert len(rows) == len(set(rows)), "a transition is listed twice"
    assert set(rows) == set(DRIVERS)


@pytest.mark.parametrize("transition", TRANSITIONS, ids=lambda t: f"{t.script}:{t.source}->{t.target}")
async def test_transition_moves_the_job_as_the_table_says(
    redis: aioredis.Redis, queue_name: str, transition: Transition
) -> None:
    lab = Lab(redis, queue_name)
    job_id = await DRIVERS[(transition.script, transition.source, transition.target)](lab)
    assert lab.before is transition.source
    assert set(lab.ran) == {transition.script}, f"the transition ran {lab.ran}"
    assert await lab.where(job_id) is transition.target
