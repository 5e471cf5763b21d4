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

    async def set_progress(self, progress: Any) -> None:
        """Record progress (any JSON value, e.g. a percentage); ``Queue.get_job`` shows it."""
        if self._report_progress is not None:
            await self._report_progress(progress)

    def set_progress_sync(self, progress: Any) -> None:
        """``set_progress`` for plain ``def`` handlers, which run in a worker thread."""
        if self._report_progress is not None and self._loop is not None:
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

    def job(
        self,
        name: str | None = None,
        *,
        model: type[pydantic.BaseModel] | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[H], H]:
        """Register a handler under ``name`` (default: the function's name).

        ``model`` validates the payload; by default it is the payload parameter's annotation when
        that is a pydantic model. ``attempts`` and ``timeout`` override the queue's defaults.
        """

        def register(handler: H) -> H:
            job_name = name or handler.__name__
            if job_name in self.jobs:
                raise ValueError(f"job {job_name!r} is registered twice")
            payload_model = model or _payload_model(handler)
            self.jobs[job_name] = JobDefinition(job_name, handler, payload_model, attempts, timeout)
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
    """JSON text of a payload (a pydantic model is dumped first); refuse what is not JSON or too big."""
    if isinstance(payload, pydantic.BaseModel):
        payload = payload.model_dump(mode="json")
    try:
        text = _encode_json(payload)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"payload is not JSON-serialisable: {exc}") from exc
    if len(text) * 4 <= max_bytes:  # UTF-8 takes at most 4 bytes a character: no need to encode
        return text
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadError(f"payload is {size} bytes, over the limit of {max_bytes} bytes")
    return text
