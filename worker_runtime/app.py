"""An ``App`` names a queue and holds its job handlers; producers and workers share it.

    app = App("emails")

    @app.job()
    async def send_email(ctx: JobContext, payload: EmailPayload) -> dict[str, str]: ...

A handler takes ``(ctx, payload)``. When the payload parameter is annotated with a pydantic model,
the payload is validated before the call (and at enqueue, when the producer has the app).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic

from worker_runtime import keys as keyspace
from worker_runtime import schedules
from worker_runtime.backoff import Backoff
from worker_runtime.errors import PayloadError, UnknownJobError

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A registered handler and the options it was registered with."""

    name: str
    handler: Handler
    model: type[pydantic.BaseModel] | None = None
    attempts: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def parse_payload(self, payload: Any) -> Any:
        """The handler's argument: the model instance, or the JSON value as is."""
        if self.model is None:
            return payload
        try:
            return self.model.model_validate(payload)
        except pydantic.ValidationError as exc:
            raise PayloadError(f"payload of job {self.name!r} does not validate: {exc}") from exc


@dataclass
class JobContext:
    """What a handler gets besides its payload."""

    queue: str
    job_id: str
    job_name: str
    attempt: int
    attempts: int
    _report_progress: Callable[[Any], Coroutine[Any, Any, None]] | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    # In the child process that runs a plain ``def`` handler: sends the progress to the worker.
    _report_progress_sync: Callable[[Any], None] | None = field(default=None, repr=False)

    async def set_progress(self, progress: Any) -> None:
        """Record progress (any JSON value, e.g. a percentage); ``Queue.get_job`` shows it."""
        if self._report_progress is not None:
            await self._report_progress(progress)

    def set_progress_sync(self, progress: Any) -> None:
        """``set_progress`` for plain ``def`` handlers (they run in a child process of the worker);
        returns once the progress is recorded."""
        if self._report_progress_sync is not None:
            self._report_progress_sync(progress)
        elif self._report_progress is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._report_progress(progress), self._loop).result()


def _payload_model(handler: Handler) -> type[pydantic.BaseModel] | None:
    params = list(inspect.signature(handler).parameters.values())
    if len(params) < 2:
        raise TypeError(f"handler {handler.__name__} must take (ctx, payload)")
    try:
        hints = typing.get_type_hints(handler)
    except NameError as exc:
        # Silently skipping validation would be worse than refusing to register.
        raise TypeError(
            f"cannot resolve the annotations of handler {handler.__name__} ({exc}); "
            "define its payload model at module level or pass model= to app.job()"
        ) from exc
    hint = hints.get(params[1].name)
    if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
        return hint
    return None


class App:
    """A queue's name plus its handlers, by job name."""

    def __init__(self, queue: str) -> None:
        keyspace.validate_queue_name(queue)
        self.queue = queue
        self.jobs: dict[str, JobDefinition] = {}
        self.schedules: dict[str, schedules.Schedule] = {}

    def job(
        self,
        name: str | None = None,
        *,
        model: type[pydantic.BaseModel] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
    ) -> Callable[[H], H]:
        """Register a handler under ``name`` (default: the function's name).

        ``model`` validates the payload; by default it is the payload parameter's annotation when
        that is a pydantic model. ``attempts``, ``timeout`` and ``backoff`` override the queue's
        defaults for every job of this name whose producer did not set them (the worker applies
        them, so a producer without the app gets them too).
        """

        def register(handler: H) -> H:
            job_name = name or handler.__name__
            if job_name in self.jobs:
                raise ValueError(f"job {job_name!r} is registered twice")
            payload_model = model or _payload_model(handler)
            self.jobs[job_name] = JobDefinition(job_name, handler, payload_model, attempts, timeout, backoff)
            return handler

        return register

    def cron(
        self,
        cron: str | None = None,
        *,
        every: float | None = None,
        payload: Any = None,
        tz: str = "UTC",
        missed: schedules.Missed = "skip",
        name: str | None = None,
    ) -> Callable[[H], H]:
        """Run the handler on every tick of ``cron`` (in time zone ``tz``) or ``every`` seconds,
        with ``payload``; exactly one job per tick however many workers run (``schedules``).
        ``missed``: a tick older than a minute when fired is dropped (``"skip"``) or fired once
        (``"catch_up"``). The schedule is named ``name`` (default: the job's name); the handler is
        registered as ``app.job()`` would, unless it is already. Refused at once if it cannot fire."""

        def register(handler: H) -> H:
            registered = next((d.name for d in self.jobs.values() if d.handler is handler), None)
            job_name = registered or handler.__name__
            schedule = schedules.Schedule(
                name or job_name, job_name, cron, every, tz,
                encode_payload(payload, keyspace.DEFAULT_MAX_PAYLOAD_BYTES), missed,
            )  # fmt: skip
            if schedule.name in self.schedules:
                raise ValueError(f"schedule {schedule.name!r} is declared twice")
            if registered is None:
                self.job(job_name)(handler)
            self.schedules[schedule.name] = schedule
            return handler

        return register

    def definition(self, name: str) -> JobDefinition:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UnknownJobError(
                f"no handler for job {name!r} on queue {self.queue!r} (known: {known})"
            ) from None


_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def encode_payload(payload: Any, max_bytes: int) -> str:
    """JSON text of a payload (a pydantic model is dumped first); refuse what is not JSON, cannot be
    sent as UTF-8 (a lone surrogate), is nested too deeply to encode, or is too big."""
    if isinstance(payload, pydantic.BaseModel):
        payload = payload.model_dump(mode="json")
    try:
        text = _encode_json(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from exc
    except RecursionError:
        raise PayloadError("payload is nested too deeply to encode as JSON") from None
    if text.isascii():  # O(1) in CPython: the common case needs no encoding to be measured
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise PayloadError(
                f"payload holds a lone surrogate ({bad!r}): not valid Unicode, it cannot be sent as UTF-8"
            ) from None
    if size > max_bytes:
        raise PayloadError(f"payload is {size} bytes, over the limit of {max_bytes} bytes")
    return text
