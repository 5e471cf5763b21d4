"""A job's options: what the caller asks for (``JobSpec``), checked once (``resolve``) into
``JobOptions``, which is stored once in the job hash as one JSON object (the ``opts`` field).

The enqueue scripts store that JSON text as it is and read from it what they act on (priority,
delay, TTL); the worker reads the rest (attempts, timeout, backoff) from the claim's reply. An
option therefore lives in one field here, one check in ``resolve`` and, if a script acts on it,
that script; see docs/contributing.md.

Attempts, timeout and backoff are stored only when the producer chose them (``JobOptions.given``):
the ones it left out are the worker's to fill in (``for_handler``), from the handler's declaration
(``@app.job(timeout=...)``), else the queue's defaults, which the operator hands to the workers
from the JobQueue. A producer that knows nothing of the handlers (``jobqueue enqueue``) thus gets
them applied all the same.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from worker_runtime import keys as keyspace
from worker_runtime.backoff import Backoff
from worker_runtime.errors import EnqueueError
from worker_runtime.settings import RetrySettings

if TYPE_CHECKING:
    from worker_runtime.app import JobDefinition

Seconds = float | timedelta

# The options a producer may leave to the worker, and what a job shows for them until then.
LEFT_TO_THE_WORKER = frozenset({"attempts", "timeout", "backoff"})
_LIBRARY = RetrySettings.model_construct()
_LIBRARY_BACKOFF = (_LIBRARY.backoff_base_seconds, _LIBRARY.backoff_cap_seconds)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue, as ``Queue.enqueue``'s arguments (``None``: the default applies)."""

    name: str
    payload: Any = None
    job_id: str | None = None
    priority: int | None = None
    delay: Seconds | None = None
    attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    ttl: Seconds | None = None
    group: str | None = None

    def options_key(self) -> tuple[Any, ...]:
        """What ``resolve`` depends on; jobs of a batch with equal keys share one ``JobOptions``.

        The types are part of the key: 1, 1.0 and True are equal, but only 1 is a valid priority.
        """
        return (self.name, self.priority, type(self.priority), self.attempts, type(self.attempts),
                self.delay, type(self.delay), self.timeout, type(self.timeout), self.backoff,
                self.ttl, type(self.ttl), self.group)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The checked options of a job, in the units of the API (seconds, to the millisecond).

    ``encoded`` is the JSON object stored in the job hash: the field names as keys, a field that
    equals its default left out, and of attempts, timeout and backoff only those ``given``, so an
    option costs nothing to the jobs that do not use it (a plain job's options are ``{}``). It
    stays short on purpose: Redis keeps a hash whose values are all at most 64 bytes in a compact
    encoding (listpack), about 2.5 times smaller than a hash table.
    """

    attempts: int = _LIBRARY.default_attempts
    timeout: float = _LIBRARY.default_timeout_seconds  # seconds one attempt may run
    # (base, cap) in seconds of the retry delays (backoff.Backoff)
    backoff: tuple[float, float] = _LIBRARY_BACKOFF
    priority: int = 0
    delay: float = 0  # seconds from enqueue until the job is ready
    # Seconds from enqueue within which the job must start, else it expires. None: no TTL.
    ttl: float | None = None
    # The job's group (a tenant, an API key): the queue's group rate limit counts its starts
    # apart from every other group's. None: no group, never held by a group limit.
    group: str | None = None
    # Which of LEFT_TO_THE_WORKER the producer chose; the others are the worker's to resolve.
    given: frozenset[str] = frozenset()
    encoded: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in _FIELDS}
        kept = {
            k: v
            for k, v in values.items()
            if (k in self.given if k in LEFT_TO_THE_WORKER else v != _DEFAULTS[k])
        }
        object.__setattr__(self, "encoded", _encode(kept))

    def backoff_policy(self) -> Backoff:
        return Backoff(*self.backoff)

    @staticmethod
    def decode(raw: bytes | str) -> JobOptions:
        """The options of a stored job; the jobs of a batch share one text, so it is parsed once."""
        return _decode(raw if isinstance(raw, bytes) else raw.encode())


_FIELDS = tuple(f for f in dataclasses.fields(JobOptions) if f.init and f.name != "given")
_DEFAULTS = {f.name: f.default for f in _FIELDS}
_encode = json.JSONEncoder(separators=(",", ":")).encode
_NUMBER = (int, float)


@functools.lru_cache(maxsize=1024)
def _decode(raw: bytes) -> JobOptions:
    stored = json.loads(raw)
    if not isinstance(stored, dict):
        raise ValueError(f"not a JSON object: {raw[:80]!r}")
    # Options a newer producer wrote and this runtime does not know are ignored, not fatal.
    values = {k: v for k, v in stored.items() if k in _NAMES}
    if "backoff" in values:
        values["backoff"] = tuple(values["backoff"])
    _check_stored(values)
    # Jobs written before options were left to the worker have all three: the producer's choice.
    return JobOptions(**values, given=frozenset(values) & LEFT_TO_THE_WORKER)


def _check_stored(values: dict[str, Any]) -> None:
    """Types of stored options (a hash another writer garbled must not run with nonsense)."""
    problems = [
        name
        for name, ok in (
            ("attempts", lambda v: type(v) is int and v >= 1),
            ("timeout", lambda v: type(v) in _NUMBER and v > 0),
            ("backoff", lambda v: len(v) == 2 and all(type(x) in _NUMBER and x >= 0 for x in v)),
            ("priority", lambda v: type(v) is int),
            ("delay", lambda v: type(v) in _NUMBER),
            ("ttl", lambda v: v is None or type(v) in _NUMBER),
            ("group", lambda v: v is None or type(v) is str),
        )
        if name in values and not ok(values[name])
    ]
    if problems:
        raise ValueError(f"bad {', '.join(problems)}: {values}")


_NAMES = frozenset(f.name for f in _FIELDS)


def for_handler(options: JobOptions, definition: JobDefinition | None, defaults: RetrySettings) -> JobOptions:
    """The options a worker runs a job with: each one the producer gave, else the handler's
    declaration, else the queue's default (``defaults``: the worker's settings)."""
    if options.given == LEFT_TO_THE_WORKER:
        return options
    filled: dict[str, Any] = {}
    if "attempts" not in options.given:
        filled["attempts"] = _first(definition and definition.attempts, defaults.default_attempts)
    if "timeout" not in options.given:
        filled["timeout"] = _first(definition and definition.timeout, defaults.default_timeout_seconds)
    if "backoff" not in options.given:
        backoff = (definition and definition.backoff) or Backoff(
            defaults.backoff_base_seconds, defaults.backoff_cap_seconds
        )
        filled["backoff"] = (backoff.base, backoff.cap)
    return dataclasses.replace(options, **filled)


def _in_seconds(value: float) -> float:
    """Rounded to the millisecond, and written without ``.0`` when whole (shorter JSON)."""
    ms = round(value * 1000)
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def resolve(spec: JobSpec, definition: JobDefinition | None, defaults: RetrySettings) -> JobOptions:
    """Check a job's options and fill in the defaults (the handler's, then the queue's)."""
    priority = 0 if spec.priority is None else spec.priority
    if type(priority) is not int or not keyspace.PRIORITY_MIN <= priority <= keyspace.PRIORITY_MAX:
        bounds = f"[{keyspace.PRIORITY_MIN}, {keyspace.PRIORITY_MAX}]"
        raise EnqueueError(f"priority must be an int in {bounds}, got {priority!r}")
    attempts = _first(spec.attempts, definition and definition.attempts, defaults.default_attempts)
    if type(attempts) is not int or not 1 <= attempts <= 1000:
        raise EnqueueError(f"attempts must be an int in [1, 1000], got {attempts!r}")
    timeout = _first(spec.timeout, definition and definition.timeout, defaults.default_timeout_seconds)
    if _seconds(timeout, "timeout", keyspace.MAX_TIMEOUT_SECONDS, timedeltas=False) <= 0:
        raise EnqueueError(f"timeout must be > 0 seconds, got {timeout!r}")
    backoff = (
        spec.backoff
        or (definition and definition.backoff)
        or Backoff(defaults.backoff_base_seconds, defaults.backoff_cap_seconds)
    )
    delay = _in_seconds(_seconds(spec.delay, "delay", keyspace.MAX_DELAY_SECONDS))
    ttl = None
    if spec.ttl is not None:
        ttl = _in_seconds(_seconds(spec.ttl, "ttl", keyspace.MAX_DELAY_SECONDS))
        if ttl <= 0:
            raise EnqueueError(f"ttl must be at least 1 ms, got {spec.ttl!r}")
        if delay >= ttl:
            # The TTL counts from enqueue, so such a job would expire before it is due.
            raise EnqueueError(f"delay ({spec.delay!r}) must be shorter than ttl ({spec.ttl!r})")
    return JobOptions(
        group=_group(spec.group),
        attempts=attempts,
        timeout=_in_seconds(float(timeout)),
        backoff=(_in_seconds(backoff.base), _in_seconds(backoff.cap)),
        priority=priority,
        delay=delay,
        ttl=ttl,
        given=_given(spec, definition, defaults),
    )


def _given(spec: JobSpec, definition: JobDefinition | None, defaults: RetrySettings) -> frozenset[str]:
    """The options this producer chose for the job: set on the job, declared by the handler of
    the producer's app, or a default of its own that is not the library's. The rest are left to
    the worker, which fills them in from the handler and the queue's defaults it has."""
    own_defaults = {
        "attempts": defaults.default_attempts != _LIBRARY.default_attempts,
        "timeout": defaults.default_timeout_seconds != _LIBRARY.default_timeout_seconds,
        "backoff": (defaults.backoff_base_seconds, defaults.backoff_cap_seconds) != _LIBRARY_BACKOFF,
    }
    return frozenset(
        name
        for name, own_default in own_defaults.items()
        if getattr(spec, name) is not None
        or (definition is not None and getattr(definition, name) is not None)
        or own_default
    )


def _group(value: object) -> str | None:
    """A group key: a non-empty string of at most MAX_GROUP_LENGTH characters, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise EnqueueError(f"group must be a non-empty string, got {value!r}")
    if len(value) > keyspace.MAX_GROUP_LENGTH:
        raise EnqueueError(
            f"group must be at most {keyspace.MAX_GROUP_LENGTH} characters, got {len(value)}: "
            f"{value[:40]!r}..."
        )
    return value


def _seconds(value: Seconds | None, what: str, maximum: float, *, timedeltas: bool = True) -> float:
    """A number of seconds (an int or a float, not a bool or a numeric string; a timedelta where
    the API takes one), finite and within [0, maximum]; else EnqueueError."""
    if value is None:
        return 0.0
    if timedeltas and isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        kinds = "a number of seconds" + (" or a timedelta" if timedeltas else "")
        raise EnqueueError(f"{what} must be {kinds}, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise EnqueueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    if seconds > maximum:
        raise EnqueueError(
            f"{what} must be at most {maximum:,.0f} seconds ({maximum / 86_400:g} days), got {value!r}"
        )
    return seconds


def _first(*values: Any) -> Any:
    """The first value that is not None (0 is a value, so ``or`` will not do)."""
    return next(v for v in values if v is not None)
