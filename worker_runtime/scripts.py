"""The Lua scripts of ``worker_runtime/lua/``: loading, and running them by SHA with NOSCRIPT handled.

Scripts are plain files; a line ``--- @include "name"`` pulls in ``lua/include/name.lua`` (each
include once). A ``ScriptCall`` is a script plus its keys and arguments, so the same call can run
on the async client, the sync client, or inside a pipeline with many others (one round trip).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.MULTILINE)

ScriptArg = str | int | float | bytes


class ScriptError(enum.IntEnum):
    """Negative returns of the scripts (see each script's header)."""

    MISSING_JOB = -1
    STALE_TOKEN = -2
    NOT_DEAD = -3


class Script(enum.StrEnum):
    ENQUEUE = "enqueue"
    ENQUEUE_MANY = "enqueue_many"
    CLAIM = "claim"
    COMPLETE = "complete"
    FAIL = "fail"
    EXTEND_LEASE = "extend_lease"
    RECOVER_STALLED = "recover_stalled"
    RELEASE = "release"
    PROGRESS = "progress"
    REPLAY = "replay"
    PURGE_DEAD = "purge_dead"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class LoadedScript:
    name: str
    source: str
    sha: str


def _expand(source: str, seen: set[str]) -> str:
    def include(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _expand((LUA_DIR / "include" / f"{name}.lua").read_text(), seen)

    return _INCLUDE.sub(include, source)


@cache
def load(script: Script) -> LoadedScript:
    source = _expand((LUA_DIR / f"{script.value}.lua").read_text(), set())
    return LoadedScript(script.value, source, hashlib.sha1(source.encode()).hexdigest())


def all_scripts() -> list[LoadedScript]:
    return [load(s) for s in Script]


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One script invocation, ready to send."""

    script: Script
    keys: Sequence[str]
    args: Sequence[ScriptArg]

    def evalsha_args(self) -> tuple[Any, ...]:
        return (load(self.script).sha, len(self.keys), *self.keys, *self.args)


async def ensure_loaded(client: aioredis.Redis) -> None:
    """Load every script once per client; EVALSHA then needs no retry on the hot path."""
    pipe = client.pipeline(transaction=False)
    for loaded in all_scripts():
        pipe.script_load(loaded.source)
    await pipe.execute()


def ensure_loaded_sync(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for loaded in all_scripts():
        pipe.script_load(loaded.source)
    pipe.execute()


async def run(client: aioredis.Redis, call: ScriptCall) -> Any:
    """Run one script; a server that lost its script cache (restart, SCRIPT FLUSH) gets it again."""
    try:
        return await client.evalsha(*call.evalsha_args())
    except NoScriptError:
        await ensure_loaded(client)
        return await client.evalsha(*call.evalsha_args())


async def run_after_pop(client: aioredis.Redis, key: str, block_seconds: float, call: ScriptCall) -> Any:
    """Block on ``BZPOPMIN key`` for up to ``block_seconds``, then run ``call``: one pipeline, so
    Redis runs the script the moment the pop returns, without a round trip in between."""
    pipe = client.pipeline(transaction=False)
    pipe.bzpopmin(key, block_seconds)
    pipe.evalsha(*call.evalsha_args())
    _, reply = await pipe.execute(raise_on_error=False)
    if isinstance(reply, NoScriptError):
        return await run(client, call)
    if isinstance(reply, Exception):
        raise reply
    return reply


def run_sync(client: redis.Redis, call: ScriptCall) -> Any:
    try:
        return client.evalsha(*call.evalsha_args())
    except NoScriptError:
        ensure_loaded_sync(client)
        return client.evalsha(*call.evalsha_args())


async def run_many(
    client: aioredis.Redis, calls: Sequence[ScriptCall], *, return_exceptions: bool = False
) -> list[Any]:
    """Run many scripts in one pipelined round trip; results in order.

    A script error is raised, or returned in its place with ``return_exceptions``.
    """
    results = await _pipeline(client, calls)
    if any(isinstance(r, NoScriptError) for r in results):
        await ensure_loaded(client)
        retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        again = await _pipeline(client, [calls[i] for i in retry])
        for i, value in zip(retry, again, strict=True):
            results[i] = value
    for value in results:
        if isinstance(value, Exception) and not return_exceptions:
            raise value
    return results


async def _pipeline(client: aioredis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(*call.evalsha_args())
    return list(await pipe.execute(raise_on_error=False))


def run_many_sync(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    def pipeline(batch: Sequence[ScriptCall]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(*call.evalsha_args())
        return list(pipe.execute(raise_on_error=False))

    results = pipeline(calls)
    if any(isinstance(r, NoScriptError) for r in results):
        ensure_loaded_sync(client)
        retry = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        for i, value in zip(retry, pipeline([calls[i] for i in retry]), strict=True):
            results[i] = value
    for value in results:
        if isinstance(value, Exception):
            raise value
    return results
