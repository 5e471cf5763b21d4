"""What goes into a handler and what comes out, the same for ``async def`` handlers (run on the
worker's loop) and plain ``def`` ones (run in a child process, ``child_process``).

- the argument: the stored payload, decoded and validated against the handler's model; a missing
  or unparsable payload, or one that does not validate, is a permanent failure saying so;
- the result: JSON, within the size limit; one that is not is a permanent failure naming the
  result (retrying would run the handler's side effects again for the same answer);
- a failure: the exception's type, message and traceback, whatever its ``__str__`` does.
"""

from __future__ import annotations

import json
import traceback as tb
from dataclasses import dataclass
from typing import Any

import pydantic

from worker_runtime.app import JobDefinition
from worker_runtime.errors import JobQueueError, PayloadError, Permanent, UnknownJobError

# Compact, no NaN (not JSON), no ASCII escaping (UTF-8 is shorter for most text); a lone surrogate
# is refused when the text is encoded, below.
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


class ResultError(JobQueueError):
    """The handler's return value cannot be stored: not JSON, or over the size limit."""


def argument(definition: JobDefinition, payload: bytes | str | None) -> Any:
    """The handler's argument for a stored payload; raises ``PayloadError`` (permanent)."""
    if payload is None:
        raise PayloadError("the job has no payload (its hash lacks the payload field)")
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"payload is not valid JSON: {_describe(exc)}") from None
    return definition.parse_payload(value)


def encode_result(result: Any, max_bytes: int) -> str:
    """The JSON text of a handler's result; raises ``ResultError`` naming what is wrong with it."""
    try:
        if isinstance(result, pydantic.BaseModel):
            result = result.model_dump(mode="json")
        text = _encode_json(result)
        size = len(text.encode())  # also refuses a lone surrogate, which no Redis write takes
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise ResultError(
            f"result is not JSON-serialisable: {_describe(exc)} (return a JSON value: dict, list, "
            "str, int, float, bool or None, or a pydantic model)"
        ) from None
    if size > max_bytes:
        raise ResultError(
            f"result is {size} bytes, over the limit of {max_bytes} bytes (store it elsewhere "
            "and return a reference)"
        )
    return text


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt as it is recorded: ``<type>: <message>``, the traceback, and whether
    retrying can help."""

    message: str
    traceback: str
    permanent: bool = False

    @classmethod
    def of(cls, exc: BaseException, *, permanent: bool | None = None) -> Failure:
        if permanent is None:
            permanent = isinstance(exc, Permanent | PayloadError | ResultError | UnknownJobError)
        return cls(f"{type(exc).__name__}: {_describe(exc)}", _traceback(exc), permanent)


def _describe(exc: BaseException) -> str:
    """``str(exc)``, or what can be said when that raises (a handler's exception may do anything)."""
    try:
        return str(exc)
    except Exception as broken:
        return f"<str() of the exception raised {type(broken).__name__}>"


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(tb.format_exception(exc))
    except Exception:  # the formatting calls into the exception too
        return f"{type(exc).__name__} (its traceback could not be formatted)"
