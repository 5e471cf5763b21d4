"""Running one claimed job: its handler called under its timeout, and what happened turned into the
script call that records it (complete, or fail with the reason and the retry delay).

``async def`` handlers run on the worker's event loop, under ``asyncio.timeout``; plain ``def``
handlers run in a child process (``process_pool``), which is killed past the timeout. Either way
the timeout counts from the handler's start, and a job's options are the producer's, else the
handler's declaration, else the queue's defaults (``options.for_handler``).

Nothing a handler or a job hash does escapes: an unknown name, a missing or unparsable payload, a
result that is not JSON, an exception whose ``str()`` raises, ``SystemExit``: each becomes the
job's failure, with its true reason, permanent where retrying cannot help.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from worker_runtime import handler_call, options
from worker_runtime.app import App, JobContext, JobDefinition, encode_payload
from worker_runtime.commands import QueueCommands
from worker_runtime.errors import PayloadError, RateLimited
from worker_runtime.handler_call import Failure
from worker_runtime.job import ClaimedJob
from worker_runtime.options import JobOptions
from worker_runtime.process_pool import ProcessPool
from worker_runtime.replies import Ack, FailOutcome, Postponed
from worker_runtime.scripts import ScriptCall
from worker_runtime.settings import WorkerSettings

log = logging.getLogger("jobqueue.worker")

Outcome = ScriptCall[Ack] | ScriptCall[FailOutcome | Ack] | ScriptCall[Postponed | Ack]
# Sends a script call through the worker's ack batcher (shared round trips, resent on a lost link).
Submit = Callable[[ScriptCall[Any]], Awaitable[Any]]
OPTIONS_KEPT = 1024


@dataclass
class Execution:
    app: App
    queue: str
    settings: WorkerSettings
    commands: QueueCommands
    pool: ProcessPool | None  # runs the def handlers; None when the app has none
    submit: Submit
    _options: dict[tuple[str, str], JobOptions] = field(default_factory=dict)

    def options(self, job: ClaimedJob) -> JobOptions:
        """The options the job runs with (most jobs share a few sets: each is resolved once)."""
        key = (job.options.encoded, job.name)
        found = self._options.get(key)
        if found is None:
            if len(self._options) >= OPTIONS_KEPT:
                self._options.clear()
            found = self._options[key] = options.for_handler(
                job.options, self.app.jobs.get(job.name), self.settings
            )
        return found

    async def run(self, job: ClaimedJob) -> Outcome:
        """Run the job's handler; return the call that records its outcome."""
        opts = self.options(job)
        definition = self.app.jobs.get(job.name)
        try:
            if definition is None:
                self.app.definition(job.name)  # raises UnknownJobError, listing the known names
            assert definition is not None
            if definition.is_async:
                text = await self._run_async(definition, job, opts)
            else:
                text = await self._run_in_child(definition, job, opts)
        except asyncio.CancelledError:
            raise  # the lease was lost, or the job is being handed back
        except _Failed as failed:
            return self.fail_call(job, opts, failed.failure)
        except RateLimited as limited:  # not a failure: the job waits, its attempt does not count
            delay_ms = round(limited.retry_after * 1000)
            return self.commands.postpone(job.id, job.token, delay_ms, hold_queue=limited.hold_queue)
        except BaseException as exc:
            return self.fail_call(job, opts, Failure.of(exc))
        return self.commands.complete(job.id, job.token, text)

    async def _run_async(self, definition: JobDefinition, job: ClaimedJob, opts: JobOptions) -> str:
        argument = handler_call.argument(definition, job.payload)
        # The loop too: a thread the handler starts (asyncio.to_thread) may use set_progress_sync.
        loop = asyncio.get_running_loop()
        ctx = JobContext(self.queue, job.id, job.name, job.attempt, opts.attempts, self._reporter(job), loop)
        try:
            # asyncio.timeout runs the handler in this task (wait_for would start another one and
            # cost a turn of the loop before the handler starts).
            async with asyncio.timeout(opts.timeout) as deadline:
                result = await definition.handler(ctx, argument)
        except TimeoutError:
            if deadline.expired():
                raise _Failed(_timed_out(opts.timeout)) from None
            raise  # the handler's own TimeoutError: an ordinary failure
        return handler_call.encode_result(result, self.settings.max_payload_bytes)

    async def _run_in_child(self, definition: JobDefinition, job: ClaimedJob, opts: JobOptions) -> str:
        assert self.pool is not None
        if job.payload is None:
            handler_call.argument(definition, None)  # raises the missing-payload error
        try:
            payload = job.payload.decode() if isinstance(job.payload, bytes) else job.payload
        except UnicodeDecodeError as exc:
            raise PayloadError(f"payload is not valid JSON: not UTF-8 ({exc})") from None
        message = {"id": job.id, "name": job.name, "payload": payload, "attempt": job.attempt,
                   "attempts": opts.attempts, "queue": self.queue}  # fmt: skip
        try:
            reply = await self.pool.run(message, opts.timeout, lambda text: self._record_progress(job, text))
        except TimeoutError:
            raise _Failed(_timed_out(opts.timeout)) from None
        if "rate_limited" in reply:
            limited = reply["rate_limited"]
            raise RateLimited(limited["retry_after"], hold_queue=bool(limited["hold_queue"]))
        if "failure" in reply:
            f = reply["failure"]
            raise _Failed(Failure(f["message"], f["traceback"], bool(f["permanent"])))
        text: str = reply["result"]
        return text

    def _reporter(self, job: ClaimedJob) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def report(progress: Any) -> None:
            await self._record_progress(job, encode_payload(progress, self.settings.max_payload_bytes))

        return report

    async def _record_progress(self, job: ClaimedJob, text: str) -> None:
        # Through the ack batcher: shared round trips, and resent if the connection drops.
        await self.submit(self.commands.progress(job.id, job.token, text))

    def fail_call(self, job: ClaimedJob, opts: JobOptions, failure: Failure) -> ScriptCall[FailOutcome | Ack]:
        delay = opts.backoff_policy().delay(job.attempt)
        log.info("job %s (%s) attempt %d/%d failed: %s", job.id, job.name, job.attempt, opts.attempts,
                 failure.message)  # fmt: skip
        return self.commands.fail(
            job.id, job.token, failure.message, failure.traceback, round(delay * 1000), failure.permanent,
            attempts=opts.attempts,
        )  # fmt: skip


class _Failed(Exception):
    """Carries a failure that is not an exception of the handler's (a timeout, a child's report)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _timed_out(timeout: float) -> Failure:
    return Failure(f"TimeoutError: job timed out after {timeout:g}s", "", permanent=False)
