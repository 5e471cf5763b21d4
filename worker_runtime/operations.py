"""Producer and admin operations written once, run on the async client or the blocking one.

An operation is a generator that yields the Redis work it needs, one step at a time, and gets each
step's parsed result back; it returns the operation's result. A step is a ``ScriptCall`` (one
script), a list of them (one pipelined round trip), a ``Read`` (plain commands, pipelined), or
``Replicated`` calls (a list, and ``WAIT`` for replicas in the same round trip).
``run_async`` and ``run_sync`` drive the same generator, so ``Queue`` and ``SyncQueue`` share every
line of logic and differ only in how they wait::

    def stats(self) -> Operation[QueueObservation]:
        return (yield self.commands.probe())

Failures of the connection come out as the runtime's errors (``connection.as_error``):
``ConfigurationError`` at once; with ``within`` seconds, a step that failed for a transient reason
is sent again with ``connection.RECONNECT``'s backoff until it has been tried for that long, then
``RedisUnavailable``. Every step of the producers may be sent twice: enqueue is idempotent by job
id, the reads are reads, and a replay or purge that already happened does nothing the second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from worker_runtime import scripts
from worker_runtime.connection import RECONNECT, AsyncClient, SyncClient, as_error, is_redis_failure
from worker_runtime.errors import RedisUnavailable
from worker_runtime.scripts import ScriptCall

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Replicated:
    """Script calls (one pipelined round trip) whose writes count only once ``replicas`` replicas
    have them, within ``timeout_ms`` (``WAIT`` in the same round trip); else ``NotReplicated``."""

    calls: Sequence[ScriptCall[Any]]
    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Read:
    """Plain commands sent in one pipeline; ``parse`` gets their replies, in order."""

    commands: Sequence[tuple[Any, ...]]
    parse: Callable[[list[Any]], Any] = list


Step = ScriptCall[Any] | Sequence[ScriptCall[Any]] | Read | Replicated
Operation = Generator[Step, Any, R]


async def _step_async(client: AsyncClient, step: Step) -> Any:
    if isinstance(step, Replicated):
        return await scripts.run_replicated(client, step.calls, step.replicas, step.timeout_ms)
    if isinstance(step, ScriptCall):
        return await scripts.run(client, step)
    if isinstance(step, Read):
        pipe = client.pipeline(transaction=False)
        for command in step.commands:
            pipe.execute_command(*command)
        return step.parse(await pipe.execute())
    return await scripts.run_many(client, step)


def _step_sync(client: SyncClient, step: Step) -> Any:
    if isinstance(step, Replicated):
        return scripts.run_replicated_sync(client, step.calls, step.replicas, step.timeout_ms)
    if isinstance(step, ScriptCall):
        return scripts.run_sync(client, step)
    if isinstance(step, Read):
        pipe = client.pipeline(transaction=False)
        for command in step.commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return step.parse(pipe.execute())
    return scripts.run_many_sync(client, step)


def _timed_out(within: float, last: BaseException | None) -> RedisUnavailable:
    cause = f" ({as_error(last)})" if last is not None else ""
    return RedisUnavailable(f"no answer from Redis within {within:g}s{cause}")


async def run_async(client: AsyncClient, operation: Operation[R], *, within: float | None = None) -> R:
    """Drive ``operation`` on the async client; see the module's docstring for ``within``."""
    reply: Any = None
    while True:
        try:
            step = operation.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = await _attempt_async(client, step, within)


async def _attempt_async(client: AsyncClient, step: Step, within: float | None) -> Any:
    last: Exception | None = None
    failures = 0
    try:
        async with asyncio.timeout(within) as scope:
            while True:
                try:
                    return await _step_async(client, step)
                except Exception as exc:
                    if not is_redis_failure(exc):
                        raise  # a server's error reply, or a bug: not the connection's
                    error = as_error(exc)
                    if within is None or not isinstance(error, RedisUnavailable):
                        raise error from exc
                    last, failures = exc, failures + 1
                    await asyncio.sleep(RECONNECT.delay(failures))
    except TimeoutError as exc:
        if within is None or not scope.expired():
            raise
        raise _timed_out(within, last) from last or exc


def run_sync(client: SyncClient, operation: Operation[R], *, within: float | None = None) -> R:
    """``run_async`` for the blocking client. With ``within``, no new attempt starts after that
    long; one already started ends within the client's socket timeouts."""
    reply: Any = None
    while True:
        try:
            step = operation.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = _attempt_sync(client, step, within)


def _attempt_sync(client: SyncClient, step: Step, within: float | None) -> Any:
    started = time.monotonic()
    failures = 0
    while True:
        try:
            return _step_sync(client, step)
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            error = as_error(exc)
            if within is None or not isinstance(error, RedisUnavailable):
                raise error from exc
            failures += 1
            pause = RECONNECT.delay(failures)
            if time.monotonic() + pause - started >= within:
                raise _timed_out(within, exc) from exc
            time.sleep(pause)
