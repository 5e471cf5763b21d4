"""The Lua scripts of ``worker_runtime/lua/``: loading, and running them by SHA with NOSCRIPT handled.

Scripts are plain files; a line ``--- @include "name"`` pulls in ``lua/include/name.lua`` (each
include once). A ``ScriptCall`` is a script plus its keys, its arguments and the parser of its
reply (built by the script's twin in ``commands.py``), so the same call can run on the async
client, the sync client, or inside a pipeline with many others (one round trip), and every way of
running it returns the same typed result.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis.asyncio.cluster as async_cluster
from redis.exceptions import NoScriptError

from worker_runtime import topologies
from worker_runtime.errors import NotReplicated
from worker_runtime.topologies import AsyncClient, SyncClient

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.MULTILINE)

ScriptArg = str | int | float | bytes
R = TypeVar("R")


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
    CONFIGURE_FLOW = "configure_flow"
    SET_SCHEDULE = "set_schedule"
    FIRE_SCHEDULE = "fire_schedule"
    POSTPONE = "postpone"
    CANCEL = "cancel"


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


def expand(source: str) -> str:
    """Lua ``source`` with its ``--- @include`` lines replaced by the includes (each once)."""
    return _expand(source, set())


@cache
def load(script: Script) -> LoadedScript:
    source = expand((LUA_DIR / f"{script.value}.lua").read_text())
    return LoadedScript(script.value, source, hashlib.sha1(source.encode()).hexdigest())


def all_scripts() -> list[LoadedScript]:
    return [load(s) for s in Script]


@dataclass(frozen=True, slots=True)
class ScriptCall(Generic[R]):
    """One script invocation, ready to send, and how to read its reply."""

    script: Script
    keys: Sequence[str]
    args: Sequence[ScriptArg]
    parse: Callable[[Any], R]

    def evalsha_args(self) -> tuple[Any, ...]:
        return (load(self.script).sha, len(self.keys), *self.keys, *self.args)

    def eval_args(self) -> tuple[Any, ...]:
        """The same call by source (``EVAL``): for a node that answered NOSCRIPT."""
        return (load(self.script).source, len(self.keys), *self.keys, *self.args)

    def settle(self, reply: Any) -> R | Exception:
        """The parsed reply, or the error in its place (a server error, or a reply that does not
        parse), so one bad reply in a pipeline fails only its own caller."""
        if isinstance(reply, Exception):
            return reply
        try:
            return self.parse(reply)
        except Exception as exc:  # a reply of the wrong shape: the script and its twin disagree
            return exc


# Every function below takes a client of any topology (``connection.connect``/``connect_sync``). A
# script call names only keys of one queue, so one slot: a Cluster client sends it to the node that
# owns the slot, and a pipeline of calls of many queues goes out as one pipeline per node, in parallel.
# Scripts are loaded on every primary when a client starts. A node that lost them (a restart, a
# replica promoted by a failover) answers NOSCRIPT, and that call is sent again by source (``EVAL``):
# routed by its key like the first, it runs wherever the slot now lives and leaves the script cached
# there. Loading "on every primary" instead would miss a promoted replica that the client still
# counts among the replicas, which it does until it reads the layout again. Calls go out as
# ``EVALSHA`` commands (redis-py's cluster pipelines refuse their ``evalsha`` method, not the command).


def _load_commands(client: Any) -> Any:
    pipe = client.pipeline(transaction=False)
    targets = client.get_primaries() if topologies.is_cluster(client) else [None]
    for node in targets:
        where = {} if node is None else {"target_nodes": node}
        for loaded in all_scripts():
            pipe.execute_command("SCRIPT LOAD", loaded.source, **where)
    return pipe


async def ensure_loaded(client: AsyncClient) -> None:
    """Load every script once per client; EVALSHA then needs no retry on the hot path."""
    if isinstance(client, async_cluster.RedisCluster):
        await client.initialize()  # its primaries are known once it has read the layout
    await _load_commands(client).execute()


async def run(client: AsyncClient, call: ScriptCall[R]) -> R:
    """Run one script; on a server that lost its script cache (restart, failover, SCRIPT FLUSH) by source."""
    try:
        reply = await client.execute_command("EVALSHA", *call.evalsha_args())
    except NoScriptError:
        reply = await client.execute_command("EVAL", *call.eval_args())
    return call.parse(reply)


async def run_after_pop(client: AsyncClient, key: str, block_seconds: float, call: ScriptCall[R]) -> R:
    """Block on ``BZPOPMIN key`` for up to ``block_seconds``, then run ``call``: one pipeline, so
    Redis runs the script the moment the pop returns, without a round trip in between (``key`` is
    of the call's queue: on a Cluster both go to the node of its slot, on one connection)."""
    pipe = client.pipeline(transaction=False)
    pipe.bzpopmin(key, block_seconds)
    pipe.execute_command("EVALSHA", *call.evalsha_args())
    _, reply = await pipe.execute(raise_on_error=False)
    if isinstance(reply, NoScriptError):
        reply = await client.execute_command("EVAL", *call.eval_args())
    if isinstance(reply, Exception):
        raise reply
    return call.parse(reply)


def run_sync(client: SyncClient, call: ScriptCall[R]) -> R:
    try:
        reply = client.execute_command("EVALSHA", *call.evalsha_args())  # type: ignore[no-untyped-call]
    except NoScriptError:
        reply = client.execute_command("EVAL", *call.eval_args())  # type: ignore[no-untyped-call]
    return call.parse(reply)


async def run_many(client: AsyncClient, calls: Sequence[ScriptCall[R]]) -> list[R]:
    """Run many scripts in one pipelined round trip; parsed results in order, the first error raised."""
    return _raise_first(await run_settled(client, calls))


async def run_settled(client: AsyncClient, calls: Sequence[ScriptCall[R]]) -> list[R | Exception]:
    """``run_many``, with each error returned in its call's place instead of raised."""
    replies = list(await _script_pipeline(client, calls).execute(raise_on_error=False))
    retry = _noscript(replies)
    if retry:
        again = await _script_pipeline(client, [calls[i] for i in retry], by_source=True).execute(
            raise_on_error=False
        )
        _fill(replies, retry, again)
    return [call.settle(reply) for call, reply in zip(calls, replies, strict=True)]


def _script_pipeline(client: Any, calls: Sequence[ScriptCall[Any]], by_source: bool = False) -> Any:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        if by_source:
            pipe.execute_command("EVAL", *call.eval_args())
        else:
            pipe.execute_command("EVALSHA", *call.evalsha_args())
    return pipe


def _noscript(replies: Sequence[Any]) -> list[int]:
    """Where in ``replies`` a node answered NOSCRIPT: the calls to send again by source."""
    return [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]


def _fill(replies: list[Any], positions: Sequence[int], again: Sequence[Any]) -> None:
    for i, value in zip(positions, again, strict=True):
        replies[i] = value


def run_many_sync(client: SyncClient, calls: Sequence[ScriptCall[R]]) -> list[R]:
    replies = list(_script_pipeline(client, calls).execute(raise_on_error=False))
    retry = _noscript(replies)
    if retry:
        _fill(
            replies,
            retry,
            _script_pipeline(client, [calls[i] for i in retry], by_source=True).execute(raise_on_error=False),
        )
    return _raise_first([call.settle(reply) for call, reply in zip(calls, replies, strict=True)])


def _replicated_pipeline(
    client: Any, calls: Sequence[ScriptCall[Any]], replicas: int, timeout_ms: int, by_source: bool = False
) -> Any:
    """The calls, then ``WAIT`` on the same connection (on a Cluster: the node of the calls' slot)."""
    pipe = _script_pipeline(client, calls, by_source)
    where = (
        {"target_nodes": client.get_node_from_key(calls[0].keys[0])} if topologies.is_cluster(client) else {}
    )
    pipe.execute_command("WAIT", replicas, timeout_ms, **where)
    return pipe


def _confirmed(
    replies: list[Any], waits: list[Any], calls: Sequence[ScriptCall[R]], replicas: int, timeout_ms: int
) -> list[R]:
    """The parsed replies, once every ``WAIT`` (each confirms the writes sent before it on its
    connection: the first round's, and the calls sent again by source) counts ``replicas``."""
    for acked in waits:
        if isinstance(acked, Exception):
            raise acked
    fewest = min(int(acked) for acked in waits)
    if fewest < replicas:
        raise NotReplicated(
            f"written, but confirmed by {fewest} of {replicas} replica(s) within {timeout_ms} ms"
        )
    return _raise_first([call.settle(reply) for call, reply in zip(calls, replies, strict=True)])


async def run_replicated(
    client: AsyncClient, calls: Sequence[ScriptCall[R]], replicas: int, timeout_ms: int
) -> list[R]:
    """``run_many`` for calls of one queue, answered only once ``replicas`` replicas have their
    writes (``WAIT``, in the same round trip); ``NotReplicated`` if fewer confirm within ``timeout_ms``."""
    replies = list(
        await _replicated_pipeline(client, calls, replicas, timeout_ms).execute(raise_on_error=False)
    )
    waits = [replies.pop()]
    retry = _noscript(replies)
    if retry:  # only those: the others have run, and running them twice would write twice
        again = list(
            await _replicated_pipeline(
                client, [calls[i] for i in retry], replicas, timeout_ms, by_source=True
            ).execute(raise_on_error=False)
        )
        waits.append(again.pop())
        _fill(replies, retry, again)
    return _confirmed(replies, waits, calls, replicas, timeout_ms)


def run_replicated_sync(
    client: SyncClient, calls: Sequence[ScriptCall[R]], replicas: int, timeout_ms: int
) -> list[R]:
    replies = list(_replicated_pipeline(client, calls, replicas, timeout_ms).execute(raise_on_error=False))
    waits = [replies.pop()]
    retry = _noscript(replies)
    if retry:
        again = list(
            _replicated_pipeline(
                client, [calls[i] for i in retry], replicas, timeout_ms, by_source=True
            ).execute(raise_on_error=False)
        )
        waits.append(again.pop())
        _fill(replies, retry, again)
    return _confirmed(replies, waits, calls, replicas, timeout_ms)


def _raise_first(results: list[R | Exception]) -> list[R]:
    for value in results:
        if isinstance(value, Exception):
            raise value
    return results  # type: ignore[return-value]  # no Exception left in it
