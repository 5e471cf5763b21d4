"""The worker: claims jobs under leases, runs their handlers, acknowledges them.

One process runs up to ``concurrency`` jobs at once: ``async def`` handlers on the event loop,
plain ``def`` handlers in child processes (``process_pool``), which a timeout or a hand-back kills
(``execution`` runs one job to the call that records its outcome). Beside the claim loop:

- the ack batcher sends the complete/fail calls of jobs that finish together in one pipelined
  round trip, so a busy worker pays a fraction of a round trip per job;
- the lease keeper extends the leases of running jobs and publishes the heartbeat, and the stalled
  recovery gives back the jobs of lost workers (``leases``); every round trip reports to the
  worker's ``link``, which says what ``/healthz`` answers and in which order things resume after
  Redis was away (leases first, then claims; recovery a heartbeat window later).

Idle, the claim loop blocks on the queue's marker (BZPOPMIN) with its next claim pipelined
behind, so a new job is claimed the moment it is enqueued, with no round trip between wake-up and
claim. A job recovered from a lost worker runs alone: the claim hands it out on its own, and the
worker claims nothing beside it. Flow control (``flow``) may hold a claim back: the worker then
blocks on the queue's ``unhold`` marker instead, until the hold may be over. A side task declares
the app's schedules and fires their due ticks (``schedule_ops.ScheduleRunner``).

On stop (SIGTERM) it stops claiming, lets running jobs finish within the grace period, then ends
the rest (cancelled; a ``def`` job's process killed, and its end awaited) and hands them back:
lease released, attempt not counted. A second stop skips what is left of the grace period. Every
wait after it is bounded, so a stop ends whatever the handlers or Redis do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from worker_runtime import replies, scripts
from worker_runtime.app import App
from worker_runtime.batching import Coalescer
from worker_runtime.commands import QueueCommands
from worker_runtime.connection import RECONNECT, TRANSIENT_ERRORS, AsyncClient, configuration_problem
from worker_runtime.errors import ConfigurationError
from worker_runtime.execution import Execution
from worker_runtime.exposition import add_process_metrics
from worker_runtime.flow import Hold
from worker_runtime.job import ClaimedJob, UnreadableJob
from worker_runtime.leases import LeaseKeeper, RunningJob, Seat, StalledRecovery, call_timeout
from worker_runtime.link import Link
from worker_runtime.metrics import RELEASED, WorkerMetrics
from worker_runtime.process_pool import ProcessPool
from worker_runtime.replies import Ack, ClaimResult
from worker_runtime.schedule_ops import ScheduleRunner
from worker_runtime.scripts import ScriptCall
from worker_runtime.settings import WorkerSettings

log = logging.getLogger("jobqueue.worker")

# Longest single block on the marker: bounds how long a stop waits for an idle worker's blocking
# call (which is never cancelled), how stale its view of delayed jobs can get, and how long a job
# that must run alone waits for an idle worker to look.
MAX_BLOCK_SECONDS = 1.0
# A claim whose reply is this late (beyond its blocking time) is abandoned and retried: redis-py
# drops the connection, so a wedged connection costs a warning, never a worker stuck for good.
CLAIM_REPLY_SECONDS = 10.0
# After the grace period, the bounded steps of a stop: cancelled handlers ending (a def job's
# process killed), the hand-back, the last acks, the deregistration. With Redis away each fails
# fast or times out: a stop ends within about 5 s of the grace period, the margin the operator
# leaves before Kubernetes kills the pod.
HANDLERS_END_SECONDS = 2.0
RELEASE_SECONDS = 1.0
ACK_FLUSH_SECONDS = 1.5
DEREGISTER_SECONDS = 0.5
ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, TimeoutError, RedisError)


def served_queue(app: App, settings: WorkerSettings) -> str:
    """The queue to serve: the settings' when set (``JOBQUEUE_QUEUE``, which the operator sets from
    the JobQueue), else the App's. The App's handlers serve whichever queue it is."""
    if "queue" in settings.model_fields_set:
        return settings.queue
    return app.queue


class Worker:
    """Runs the handlers of ``app`` for jobs of its queue (see ``served_queue``).

    Every Redis call of the worker runs inside a loop of its own that backs off and retries (the
    claim loop, the ack batcher, the lease keeper, the stalled-job check), so give it a client that
    does not retry underneath them: ``connect(url, retries=0)``, as ``jobqueue worker`` does.
    ``run`` raises ``ConfigurationError`` when Redis refuses the worker for a reason retrying
    cannot fix (a wrong password, a failed TLS verification), or a ``def`` handler cannot run in a
    child process.
    """

    def __init__(
        self,
        app: App,
        redis_client: AsyncClient,
        settings: WorkerSettings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.redis = redis_client
        self.settings = settings or WorkerSettings(queue=app.queue)
        self.queue = served_queue(app, self.settings)
        self.commands = QueueCommands(self.queue, retention=self.settings.retention())
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if registry is None:  # the process's own registry: with the process and build series
            registry = CollectorRegistry()
            add_process_metrics(registry, "worker")
        self.metrics = WorkerMetrics(registry, app.jobs)
        self.metrics.redis_up.labels(self.queue).set_function(lambda: 1.0 if self.healthy else 0.0)
        self.running: dict[str, RunningJob] = {}
        self.link = Link(on_fatal=self._stop_at_once)
        self._stop = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._acks: Coalescer[ScriptCall[Any]] = Coalescer(self._send_acks)
        has_def = any(not d.is_async for d in app.jobs.values())
        max_bytes = self.settings.max_payload_bytes
        self._pool = ProcessPool(app.jobs, max_bytes) if has_def else None
        self._execution = Execution(
            app, self.queue, self.settings, self.commands, self._pool, self._acks.submit
        )
        self._isolating = False  # reserved a job that must run alone: claim nothing until idle
        # Why flow control held the last claim back (paused, rate limited, capped), if it did.
        self.held: Hold | None = None
        self._alone = 0  # running jobs that run alone
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._lease_ms = round(self.settings.lease_seconds * 1000)
        self._wake_task: asyncio.Task[None] | None = None
        seat = Seat(redis_client, self.commands, self.id, self.settings, self.link)
        self.leases = LeaseKeeper(seat, self.running, self.heartbeat, lambda: self._isolating)
        self._recovery = StalledRecovery(seat, self.metrics)
        self._schedules = ScheduleRunner(redis_client, self.commands, app.schedules.values())

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether the last round trip to Redis succeeded (``/healthz``)."""
        return self.link.reachable

    @property
    def alive(self) -> bool:
        """Whether the event loop still turns (``/livez``): the lease keeper reports in on time."""
        return self.leases.alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask for a graceful stop; a second call stops at once (safe from a signal handler)."""
        if self._stop.is_set():
            if not self._stop_now.is_set():
                log.warning("stop asked again: handing the running jobs back now")
            self._stop_now.set()
            return
        self._stop.set()
        # Wake our own blocking call on the marker, so an idle worker stops at once (another idle
        # worker may take the wake-up instead; then ours ends within MAX_BLOCK_SECONDS).
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is blocking
            self._wake_task = asyncio.get_running_loop().create_task(self._wake_self())

    def _stop_at_once(self) -> None:
        self.stop()
        self.stop()

    async def _wake_self(self) -> None:
        with contextlib.suppress(*ERRORS):
            async with asyncio.timeout(DEREGISTER_SECONDS):
                pipe = self.redis.pipeline(transaction=False)
                for key in (self.commands.keys.marker, self.commands.keys.unhold):
                    pipe.zadd(key, {"0": 0})
                await pipe.execute()

    async def run(self) -> None:
        """Serve until ``stop()``; returns after in-flight jobs finished or were handed back."""
        if self._pool is not None:
            self._pool.check()
        self.metrics.serving(self.queue)  # the handlers are all registered by now
        if not await self._connect():
            return
        if self._pool is not None:
            await self._pool.start()
        background = [
            asyncio.create_task(self.leases.run(), name="jobqueue-leases"),
            asyncio.create_task(self._recovery.run(), name="jobqueue-stalled"),
            asyncio.create_task(self._schedules.run(self._stop), name="jobqueue-schedules"),
        ]
        if self.queue != self.app.queue:
            log.info(
                "serving queue %r (JOBQUEUE_QUEUE) with the handlers of app %r", self.queue, self.app.queue
            )
        log.info("worker %s serving queue %r, concurrency %d", self.id, self.queue, self.settings.concurrency)
        try:
            await self._claim_loop()
        finally:
            await self._shutdown(background)
        if self.link.fatal is not None:
            raise self.link.fatal

    async def _connect(self) -> bool:
        """Load the scripts, backing off while Redis is unreachable; False if stopped meanwhile."""
        failures = 0
        while not self.stopping:
            try:
                async with asyncio.timeout(CLAIM_REPLY_SECONDS):
                    await scripts.ensure_loaded(self.redis)
                self.link.answered()
                return True
            except ERRORS as exc:
                problem = configuration_problem(exc)
                if problem is not None:
                    raise ConfigurationError(problem) from None
                if not isinstance(exc, (*TRANSIENT_ERRORS, TimeoutError)):
                    raise
                self.link.failed(exc, "connecting")
                failures += 1
                await _first_of(RECONNECT.delay(failures), self._stop)
        return False

    # --- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        block = 0.0  # seconds to block on the marker before the next claim; 0 claims at once
        while not self.stopping:
            held = self.held is not None  # flow control held the last claim back: block on `unhold`
            if not self.link.leases_current.is_set():
                await _first_of(None, self.link.leases_current, self._stop)  # the lease keeper reconnects
                block = 0.0
                continue
            free = self.settings.concurrency - len(self.running)
            if free <= 0 or self._alone or (self._isolating and self.running):
                self._slot_freed.clear()
                await _first_of(None, self._slot_freed, self._stop)
                block = 0.0
                continue
            started = time.perf_counter()
            try:
                async with asyncio.timeout(block + CLAIM_REPLY_SECONDS):
                    claimed = await self._claim(free, block, held)
            except ERRORS as exc:  # TimeoutError is an OSError: the late reply lands here
                self.link.failed(exc, "claim")
                block = 0.0
                continue
            self.link.answered()
            if not block:  # a blocking claim's time is mostly the wait for work
                self.metrics.claim_latency.labels(self.queue).observe(time.perf_counter() - started)
            self._isolating = claimed.isolate
            self._take(claimed)
            if self.stopping and claimed.jobs:
                # Claimed while stop woke the block: hand them back at once, attempt not counted.
                await self._release(claimed.jobs)
                break
            for job in claimed.jobs:
                self._start(job)
            if claimed.jobs:
                # Let the new jobs' handlers start before the next claim is sent.
                await asyncio.sleep(0)
            # Expired and dead-lettered jobs took claim slots: more ready jobs may be behind them.
            busy = (claimed.jobs or claimed.expired or claimed.buried or claimed.unreadable or claimed.isolate
                    or claimed.parked)  # fmt: skip
            self.held = None if busy else claimed.held
            if self.held is not None:
                block = self._held_seconds(claimed.held_ms)
            else:
                block = 0.0 if busy else self._block_seconds(claimed.next_due_in_ms)

    async def _claim(self, free: int, block: float, held: bool = False) -> ClaimResult:
        """Claim up to ``free`` jobs; with ``block``, first wait on the marker for up to that long.

        The blocking pop and the claim go in one pipeline: Redis runs the claim the moment the pop
        returns, so a job enqueued for an idle worker is claimed without another round trip. The
        blocking call is never cancelled (a cancelled BZPOPMIN can leave its reply on a pooled
        connection for the next command to misread); stop wakes it through the marker instead.
        """
        call = self.commands.claim(
            self.id, free, self._lease_ms, self.settings.keep_expired, running=len(self.running)
        )
        if not block:
            return await scripts.run(self.redis, call)
        keys = self.commands.keys
        return await scripts.run_after_pop(self.redis, keys.unhold if held else keys.marker, block, call)

    @staticmethod
    def _block_seconds(next_due_in_ms: int | None) -> float:
        """Wait until an enqueue wakes us, the next scheduled job is due, or MAX_BLOCK_SECONDS
        (which bounds how long a stop waits for the blocking call)."""
        if next_due_in_ms is None:
            return MAX_BLOCK_SECONDS
        timeout = min(MAX_BLOCK_SECONDS, next_due_in_ms / 1000)
        return max(timeout, 0.01) if timeout > 0 else 0.0

    @staticmethod
    def _held_seconds(held_ms: int | None) -> float:
        """Held by flow control: until the rate window reopens, or a change of the flow control
        (or, under a running cap, the end of a job) wakes us; at most MAX_BLOCK_SECONDS."""
        if held_ms is None:
            return MAX_BLOCK_SECONDS
        return min(MAX_BLOCK_SECONDS, max(0.001, held_ms / 1000))

    def _take(self, claimed: ClaimResult) -> None:
        """Account for what a claim dealt with itself: dead-lettered, expired, unreadable jobs."""
        for bad in claimed.unreadable:
            self._dead_letter(bad)
        for job_id in claimed.buried:
            log.warning("job %s dead-lettered: its hash is missing or garbled (see its error)", job_id)
            self.metrics.dead_lettered.labels(self.queue, self.metrics.job_label(None)).inc()
        for name in claimed.expired:
            self.metrics.expired.labels(self.queue, self.metrics.job_label(name)).inc()

    def _side_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _dead_letter(self, bad: UnreadableJob) -> None:
        """A claimed job whose hash does not read: dead-lettered with the reason (no retry)."""
        log.warning("job %s dead-lettered: %s", bad.id, bad.reason)
        call = self.commands.fail(bad.id, bad.token, bad.reason, "", 0, True, attempts=1)
        label = self.metrics.job_label(bad.name)

        async def send() -> None:
            with contextlib.suppress(Exception):  # unsent: its lease runs out and it comes back
                outcome = await self._acks.submit(call)
                if outcome not in replies.REFUSED:
                    self.metrics.attempt_ended(self.queue, label, outcome)

        self._side_task(send())

    # --- running a job -------------------------------------------------------------------------

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"jobqueue-job-{job.id}")
        self.running[job.id] = RunningJob(job, task)
        if job.alone:
            self._alone += 1
            log.warning("job %s (%s) runs alone: its worker was lost while running it %d time(s)",
                        job.id, job.name, job.stalls)  # fmt: skip
        self.metrics.in_flight.labels(self.queue).inc()
        self.metrics.wait.labels(self.queue, self.metrics.job_label(job.name)).observe(
            max(0.0, time.time() - job.ready_at_ms / 1000)
        )
        task.add_done_callback(lambda done: self._finished(job, done))

    def _finished(self, job: ClaimedJob, task: asyncio.Task[None]) -> None:
        self.running.pop(job.id, None)
        if job.alone:
            self._alone -= 1
        self.metrics.in_flight.labels(self.queue).dec()
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: its outcome was not recorded (%r); it runs again once its lease runs out",
                      job.id, task.exception())  # fmt: skip

    async def _execute(self, job: ClaimedJob) -> None:
        started = time.perf_counter()
        call = await self._execution.run(job)
        label = self.metrics.job_label(job.name)
        self.metrics.duration.labels(self.queue, label).observe(time.perf_counter() - started)
        entry = self.running.get(job.id)
        if entry is not None and entry.lease_lost:
            return  # another worker owns the job now; our ack would be refused anyway
        if entry is not None:
            entry.handler_done = True
        outcome = await self._acks.submit(call)
        if outcome in replies.REFUSED:
            log.warning("job %s finished after its lease was lost (%s); ack refused", job.id, outcome)
            return
        if outcome is replies.Postponed.POSTPONED:
            log.info("job %s postponed: its handler raised RateLimited (attempt not counted)", job.id)
            return
        self.metrics.attempt_ended(self.queue, label, outcome)

    async def _send_acks(self, calls: Sequence[ScriptCall[Any]]) -> list[Any]:
        """The ack batcher's round trip (it resends on a lost connection), reported to the link."""
        try:
            results = await scripts.run_settled(self.redis, calls)
        except ERRORS as exc:
            self.link.failed(exc, "acknowledgement")
            raise
        self.link.answered()
        return results

    # --- background tasks ----------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        return {
            "pod": self.settings.pod_name or socket.gethostname(),
            "inflight": len(self.running),
            "concurrency": self.settings.concurrency,
            "draining": self.stopping,
        }

    async def extend_leases(self) -> None:
        """Extend every running job's lease and publish the heartbeat, in one script call."""
        await self.leases.extend()

    # --- shutdown ------------------------------------------------------------------------------

    async def _shutdown(self, background: list[asyncio.Task[None]]) -> None:
        await self._drain()
        for task in background:
            task.cancel()
        await asyncio.wait(background, timeout=call_timeout(self.settings))
        flush = asyncio.ensure_future(self._acks.aclose())
        _, unsent = await asyncio.wait([flush], timeout=ACK_FLUSH_SECONDS)
        if unsent:
            log.warning(
                "acks unsent after %ss; their jobs return when their leases run out", ACK_FLUSH_SECONDS
            )
            flush.cancel()
        for task in self._side_tasks:
            task.cancel()
        if self._pool is not None:
            await self._pool.aclose()
        with contextlib.suppress(*ERRORS):
            async with asyncio.timeout(DEREGISTER_SECONDS):
                await self.redis.hdel(self.commands.keys.workers, self.id)
        if self._wake_task is not None:
            self._wake_task.cancel()
        log.info("worker %s stopped", self.id)

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then end the rest and hand them back."""
        if not self.running:
            return
        log.info(
            "draining %d job(s), grace period %.0fs", len(self.running), self.settings.grace_period_seconds
        )
        with contextlib.suppress(*ERRORS):
            await self.leases.extend()  # publish draining=True
        entries = list(self.running.values())
        if not self._stop_now.is_set():
            deadline = time.monotonic() + self.settings.grace_period_seconds
            while any(not e.task.done() for e in entries) and not self._stop_now.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._slot_freed.clear()
                await _first_of(remaining, self._slot_freed, self._stop_now)
        left = [e for e in entries if not e.task.done()]
        # A job whose handler is done is only waiting for its ack: let it land (it is not run again).
        ending = [e for e in left if not e.handler_done]
        for entry in ending:
            entry.task.cancel()
        if not ending:
            return
        done, stubborn = await asyncio.wait([e.task for e in ending], timeout=HANDLERS_END_SECONDS)
        if stubborn:
            log.error(
                "%d handler(s) did not stop when cancelled: their jobs are not handed back (they "
                "may still run); they are recovered once this process has ended and their leases ran out",
                len(stubborn),
            )
        ended = [e.job for e in ending if e.task in done and not e.lease_lost]
        if ended:
            await self._release(ended)

    async def _release(self, jobs: list[ClaimedJob]) -> None:
        """Hand jobs back to the queue: lease released, attempt not counted. Their handlers are
        over: a job is never handed back while it may still run here."""
        calls = [self.commands.release(job.id, job.token) for job in jobs]
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                acks = await scripts.run_settled(self.redis, calls)
        except ERRORS as exc:
            log.warning("could not hand back %d job(s) (%s); they are recovered when their leases run out",
                        len(jobs), exc)  # fmt: skip
            return
        for job in jobs:
            self.metrics.jobs.labels(self.queue, self.metrics.job_label(job.name), RELEASED).inc()
        log.info("handed back %d unfinished job(s)", acks.count(Ack.DONE))


async def _first_of(seconds: float | None, *events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set, or ``seconds`` passed (None: no limit)."""
    if any(e.is_set() for e in events):
        return
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def run_process(main: Coroutine[Any, Any, None], cleanup_seconds: float = 2.0) -> None:
    """``asyncio.run`` for a process that is a worker: its end may not wait on any task. The tasks
    left when ``main`` returns are cancelled and given ``cleanup_seconds``; one that ignores its
    cancellation (a handler that swallows it) is abandoned with the process, whose end ends it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=cleanup_seconds))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(asyncio.wait([loop.create_task(loop.shutdown_default_executor())],
                                                 timeout=cleanup_seconds))  # fmt: skip
        finally:
            asyncio.set_event_loop(None)
            loop.close()
