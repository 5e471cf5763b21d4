"""The worker: claims jobs under leases, runs their handlers, acknowledges them.

One process runs up to ``concurrency`` jobs at once: ``async def`` handlers on the event loop,
plain ``def`` handlers in a thread pool. Background tasks beside the claim loop:

- the ack batcher sends the complete/fail calls of jobs that finish together in one pipelined
  round trip, so a busy worker pays a fraction of a round trip per job;
- the lease keeper extends the leases of running jobs and publishes the heartbeat (pod, in-flight)
  that tells the operator which pods are busy;
- the stalled recoverer gives back jobs whose worker died (one worker elected per interval).

Idle, the claim loop blocks on the queue's marker (BZPOPMIN) with its next claim pipelined
behind, so a new job is claimed the moment it is enqueued, with no round trip between wake-up and
claim. On stop (SIGTERM) it stops claiming, lets running jobs finish within the grace period, then
hands the rest back: lease released, attempt not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import socket
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from worker_runtime import scripts
from worker_runtime.app import App, JobContext, JobDefinition, encode_payload
from worker_runtime.backoff import Backoff
from worker_runtime.batching import script_batcher
from worker_runtime.commands import QueueCommands, parse_claim
from worker_runtime.connection import TRANSIENT_ERRORS
from worker_runtime.errors import JobQueueError, Permanent
from worker_runtime.job import ClaimedJob
from worker_runtime.metrics import WorkerMetrics
from worker_runtime.scripts import ScriptCall, ScriptError
from worker_runtime.settings import WorkerSettings

log = logging.getLogger("jobqueue.worker")

# Reconnect delays after a lost Redis connection: 0.1 s doubling to 5 s, jittered.
RECONNECT = Backoff(base=0.1, cap=5.0)
# Longest single block on the marker: bounds how long a stop waits for an idle worker's blocking
# call (which is never cancelled) and how stale its view of delayed jobs can get.
MAX_BLOCK_SECONDS = 1.0
# How long a stopping worker waits for its last acks to be sent.
ACK_FLUSH_SECONDS = 10.0
# A claim whose reply is this late (beyond its blocking time) is abandoned and retried: redis-py
# drops the connection, so a wedged connection costs a warning, never a worker stuck for good.
CLAIM_REPLY_SECONDS = 10.0


@dataclass
class RunningJob:
    job: ClaimedJob
    task: asyncio.Task[None]
    lease_lost: bool = False
    handler_done: bool = False  # the outcome is being acknowledged; the job may have left active


class Worker:
    """Runs the handlers of ``app`` for jobs of ``app.queue``."""

    def __init__(
        self,
        app: App,
        redis_client: aioredis.Redis,
        settings: WorkerSettings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.redis = redis_client
        self.settings = settings or WorkerSettings(queue=app.queue)
        self.commands = QueueCommands(app.queue)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.metrics = WorkerMetrics(registry if registry is not None else CollectorRegistry())
        self.running: dict[str, RunningJob] = {}
        self.healthy = False
        self._stop = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._acks = script_batcher(redis_client)
        self._executor = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="jobqueue-job")
        self._lease_ms = round(self.settings.lease_seconds * 1000)
        self._wake_task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful stop (safe from a signal handler on the loop)."""
        if self._stop.is_set():
            return
        self._stop.set()
        # Wake our own blocking call on the marker, so an idle worker stops at once (another idle
        # worker may take the wake-up instead; then ours ends within MAX_BLOCK_SECONDS).
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is blocking
            self._wake_task = asyncio.get_running_loop().create_task(self._wake_self())

    async def _wake_self(self) -> None:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self.redis.zadd(self.commands.keys.marker, {"0": 0})

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        """Serve until ``stop()``; returns after in-flight jobs finished or were handed back."""
        await self._with_reconnect(lambda: scripts.ensure_loaded(self.redis))
        background = [
            asyncio.create_task(self._keep_leases(), name="jobqueue-leases"),
            asyncio.create_task(self._recover_stalled(), name="jobqueue-stalled"),
        ]
        log.info(
            "worker %s serving queue %r, concurrency %d", self.id, self.app.queue, self.settings.concurrency
        )
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            try:
                await asyncio.wait_for(self._acks.aclose(), ACK_FLUSH_SECONDS)
            except TimeoutError:
                log.warning("acks unsent after %ss; their jobs return when leases expire", ACK_FLUSH_SECONDS)
            with contextlib.suppress(*TRANSIENT_ERRORS):  # TimeoutError included: a stop never hangs
                async with asyncio.timeout(ACK_FLUSH_SECONDS):
                    await self.redis.hdel(self.commands.keys.workers, self.id)
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.id)

    async def _sleep_or_stop(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _with_reconnect(self, operation: Any) -> Any:
        """Run ``operation()`` until it succeeds, backing off while Redis is unreachable."""
        failures = 0
        while True:
            try:
                result = await operation()
                self.healthy = True
                return result
            except TRANSIENT_ERRORS as exc:
                self.healthy = False
                failures += 1
                delay = RECONNECT.delay(failures)
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    # --- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        failures = 0
        block = 0.0  # seconds to block on the marker before the next claim; 0 claims at once
        while not self.stopping:
            free = self.settings.concurrency - len(self.running)
            if free <= 0:
                await self._wait_for_slot()
                block = 0.0
                continue
            started = time.perf_counter()
            try:
                async with asyncio.timeout(block + CLAIM_REPLY_SECONDS):
                    reply = await self._claim(free, block)
            except TRANSIENT_ERRORS as exc:  # TimeoutError is an OSError: the late reply lands here
                self.healthy = False
                failures += 1
                log.warning("claim failed (%s); retrying", exc)
                await self._sleep_or_stop(RECONNECT.delay(failures))
                block = 0.0
                continue
            failures, self.healthy = 0, True
            if not block:  # a blocking claim's time is mostly the wait for work
                self.metrics.claim_latency.labels(self.app.queue).observe(time.perf_counter() - started)
            claimed = parse_claim(reply)
            if self.stopping and claimed.jobs:
                # Claimed while stop woke the block: hand them back at once, attempt not counted.
                await self._release(claimed.jobs)
                break
            for job in claimed.jobs:
                self._start(job)
            if claimed.jobs:
                # Let the new jobs' handlers start before the next claim is sent.
                await asyncio.sleep(0)
            block = 0.0 if claimed.jobs else self._block_seconds(claimed.next_due_in_ms)

    async def _claim(self, free: int, block: float) -> Any:
        """Claim up to ``free`` jobs; with ``block``, first wait on the marker for up to that long.

        The blocking pop and the claim go in one pipeline: Redis runs the claim the moment the pop
        returns, so a job enqueued for an idle worker is claimed without another round trip. The
        blocking call is never cancelled (a cancelled BZPOPMIN can leave its reply on a pooled
        connection for the next command to misread); stop wakes it through the marker instead.
        """
        call = self.commands.claim(self.id, free, self._lease_ms)
        if not block:
            return await scripts.run(self.redis, call)
        return await scripts.run_after_pop(self.redis, self.commands.keys.marker, block, call)

    @staticmethod
    def _block_seconds(next_due_in_ms: int) -> float:
        """Wait until an enqueue wakes us, the next scheduled job is due, or MAX_BLOCK_SECONDS
        (which bounds how long a stop waits for the blocking call)."""
        if next_due_in_ms < 0:
            return MAX_BLOCK_SECONDS
        timeout = min(MAX_BLOCK_SECONDS, next_due_in_ms / 1000)
        return max(timeout, 0.01) if timeout > 0 else 0.0

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        stop = asyncio.ensure_future(self._stop.wait())
        freed = asyncio.ensure_future(self._slot_freed.wait())
        await asyncio.wait([stop, freed], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        freed.cancel()

    # --- running a job -------------------------------------------------------------------------

    def _start(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(job), name=f"jobqueue-job-{job.id}")
        self.running[job.id] = RunningJob(job, task)
        self.metrics.in_flight.labels(self.app.queue).inc()
        self.metrics.wait.labels(self.app.queue, job.name).observe(
            max(0.0, time.time() - job.ready_at_ms / 1000)
        )
        task.add_done_callback(lambda _: self._finished(job))

    def _finished(self, job: ClaimedJob) -> None:
        self.running.pop(job.id, None)
        self.metrics.in_flight.labels(self.app.queue).dec()
        self._slot_freed.set()

    async def _execute(self, job: ClaimedJob) -> None:
        started = time.perf_counter()
        outcome, call = await self._run_handler(job)
        self.metrics.duration.labels(self.app.queue, job.name).observe(time.perf_counter() - started)
        entry = self.running.get(job.id)
        if entry is not None and entry.lease_lost:
            return  # another worker owns the job now; our ack would be refused anyway
        if entry is not None:
            entry.handler_done = True
        reply = int(await self._acks.submit(call))
        if reply == ScriptError.STALE_TOKEN:
            log.warning("job %s finished after its lease was recovered elsewhere; ack refused", job.id)
            return
        if outcome == "failed":
            outcome = "dead" if reply == 2 else "retried"
        self.metrics.jobs.labels(self.app.queue, job.name, outcome).inc()
        if outcome == "retried":
            self.metrics.retries.labels(self.app.queue, job.name).inc()
        elif outcome == "dead":
            self.metrics.dead_lettered.labels(self.app.queue, job.name).inc()

    async def _run_handler(self, job: ClaimedJob) -> tuple[str, ScriptCall]:
        """Run the handler; return the outcome and the call that records it."""
        try:
            definition = self.app.definition(job.name)
            argument = definition.parse_payload(json.loads(job.payload))
        except (JobQueueError, ValueError) as exc:
            # Unknown job or a payload that can never validate: retrying cannot help.
            return "failed", self._fail_call(job, exc, permanent=True)
        timeout = job.timeout_ms / 1000
        try:
            # asyncio.timeout runs the handler in this task (wait_for would start another one and
            # cost a turn of the loop before the handler starts).
            async with asyncio.timeout(timeout):
                result = await self._call(definition, job, argument)
            text = encode_payload(result, self.settings.max_payload_bytes)
        except Permanent as exc:
            return "failed", self._fail_call(job, exc, permanent=True)
        except TimeoutError:
            return "failed", self._fail_call(job, TimeoutError(f"job timed out after {timeout:g}s"))
        except Exception as exc:  # a handler may raise anything; it is the job's failure, not ours
            return "failed", self._fail_call(job, exc)
        return "completed", self.commands.complete(job.id, job.token, text, self.settings.keep_completed)

    async def _call(self, definition: JobDefinition, job: ClaimedJob, argument: Any) -> Any:
        loop = asyncio.get_running_loop()

        async def report(progress: Any) -> None:
            text = encode_payload(progress, self.settings.max_payload_bytes)
            await scripts.run(self.redis, self.commands.progress(job.id, job.token, text))

        ctx = JobContext(self.app.queue, job.id, job.name, job.attempt, job.attempts, report, loop)
        if definition.is_async:
            return await definition.handler(ctx, argument)
        # A thread cannot be cancelled: on timeout the job is failed and the thread runs out alone.
        return await loop.run_in_executor(
            self._executor, functools.partial(definition.handler, ctx, argument)
        )

    def _fail_call(self, job: ClaimedJob, exc: BaseException, *, permanent: bool = False) -> ScriptCall:
        message = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        delay = Backoff(job.backoff_base_ms / 1000, job.backoff_cap_ms / 1000).delay(job.attempt)
        log.info("job %s (%s) attempt %d/%d failed: %s", job.id, job.name, job.attempt, job.attempts, message)
        return self.commands.fail(job.id, job.token, message, trace, round(delay * 1000), permanent)

    # --- background tasks ----------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        return {
            "pod": self.settings.pod_name or socket.gethostname(),
            "pid": os.getpid(),
            "inflight": len(self.running),
            "concurrency": self.settings.concurrency,
            "draining": self.stopping,
        }

    async def extend_leases(self) -> None:
        """Extend every running job's lease and publish the heartbeat, in one script call."""
        running = list(self.running.values())
        call = self.commands.extend_leases(
            self.id, self.heartbeat(), [(r.job.id, r.job.token) for r in running], self._lease_ms
        )
        results = await scripts.run(self.redis, call)
        for entry, kept in zip(running, results, strict=True):
            # A job whose ack already landed is no longer active: its lease is not lost, it is done.
            if not int(kept) and not entry.task.done() and not entry.handler_done:
                log.warning("lease of job %s was lost; cancelling it here", entry.job.id)
                entry.lease_lost = True
                entry.task.cancel()

    async def _keep_leases(self) -> None:
        interval = min(self.settings.lease_seconds / 3, self.settings.heartbeat_seconds)
        while True:
            try:
                await self.extend_leases()
            except TRANSIENT_ERRORS as exc:
                log.warning("lease extension failed (%s)", exc)
            await asyncio.sleep(interval)

    async def _recover_stalled(self) -> None:
        interval = self.settings.stalled_interval_seconds
        await asyncio.sleep(random.uniform(0, interval))  # spread workers that started together
        stale_ms = round(max(self.settings.lease_seconds, 5 * self.settings.heartbeat_seconds) * 1000)
        while True:
            call = self.commands.recover_stalled(self.id, round(interval * 1000), stale_ms)
            try:
                recovered, dead = (int(v) for v in await scripts.run(self.redis, call))
                if recovered > 0:
                    self.metrics.stalled_recovered.labels(self.app.queue).inc(recovered)
                    log.warning("recovered %d job(s) from expired leases, %d dead-lettered", recovered, dead)
            except TRANSIENT_ERRORS as exc:
                log.warning("stalled-job check failed (%s)", exc)
            await asyncio.sleep(interval)

    # --- shutdown ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        if not self.running:
            return
        log.info(
            "draining %d job(s), grace period %.0fs", len(self.running), self.settings.grace_period_seconds
        )
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self.extend_leases()  # publish draining=True
        tasks = [r.task for r in self.running.values()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.settings.grace_period_seconds)
        unfinished = [r.job for r in self.running.values() if r.task in pending and not r.lease_lost]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if unfinished:
            await self._release(unfinished)

    async def _release(self, jobs: list[ClaimedJob]) -> None:
        """Hand jobs back to the queue: lease released, attempt not counted."""
        calls = [self.commands.release(job.id, job.token) for job in jobs]
        replies = await self._with_reconnect(
            lambda: scripts.run_many(self.redis, calls, return_exceptions=True)
        )
        released = sum(1 for r in replies if not isinstance(r, Exception) and int(r) == 1)
        for job in jobs:
            self.metrics.jobs.labels(self.app.queue, job.name, "released").inc()
        log.info("handed back %d unfinished job(s)", released)
