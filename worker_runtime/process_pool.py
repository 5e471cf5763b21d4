"""The worker's pool of child processes for plain ``def`` handlers (see ``child_process``).

Children are created lazily, one per ``def`` job running at once, so never more than the worker's
concurrency: a claimed ``def`` job always gets a child at once and starts, and its timeout counts
from then. A child is reused for the next job; one that overran its timeout, or whose job was
cancelled (lease lost, hand-back at shutdown), is killed, and its end awaited before ``run``
returns, so the job no longer runs anywhere once the worker moves on; one that died on its own
(a crash in native code, ``os._exit``) fails its own job only.

Children are forked by multiprocessing's fork server with the handlers' modules preloaded: no
lock a thread of the worker holds is inherited, and a new child costs a fork, not an interpreter
start. Handlers (and payload models) are handed to the children by reference at their start, so
they must be importable: defined at module level. Payloads, results and progress are JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import pickle
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.process import BaseProcess
from typing import Any

from worker_runtime import child_process
from worker_runtime.app import JobDefinition
from worker_runtime.errors import ConfigurationError, JobQueueError

log = logging.getLogger("jobqueue.worker")

# Seconds a new child may take to import the handlers and say it is ready.
START_SECONDS = 60.0
# Seconds to wait for a killed child's end to be confirmed (SIGKILL takes effect at once).
KILL_SECONDS = 5.0


class ChildDied(JobQueueError):
    """The process running a ``def`` handler ended before the handler returned."""


class ChildStartError(JobQueueError):
    """No process could be started for a ``def`` handler."""


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        self.writer.write(child_process.FRAME.pack(len(data)) + data)
        await self.writer.drain()

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the child is gone."""
        try:
            header = await self.reader.readexactly(child_process.FRAME.size)
            body = await self.reader.readexactly(child_process.FRAME.unpack(header)[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: dict[str, Any] = json.loads(body)
        return message


ProgressSink = Callable[[str], Awaitable[None]]


class ProcessPool:
    def __init__(self, definitions: Mapping[str, JobDefinition], max_bytes: int) -> None:
        self.definitions = {name: d for name, d in definitions.items() if not d.is_async}
        self.max_bytes = max_bytes
        self._context = multiprocessing.get_context("forkserver")
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._spawning = asyncio.Lock()

    def check(self) -> None:
        """Refuse, before anything runs, handlers a child process could not import."""
        for name, definition in self.definitions.items():
            try:
                pickle.dumps(definition)
            except Exception as exc:
                handler = getattr(definition.handler, "__qualname__", repr(definition.handler))
                raise ConfigurationError(
                    f"def handler {handler} of job {name!r} cannot run in a child process ({exc}): "
                    "define it, and its payload model, at module level (or make it async def)"
                ) from None

    async def start(self) -> None:
        """Start the fork server with the handlers' modules preloaded (once per process)."""
        modules = sorted(
            {"worker_runtime.child_process"} | {d.handler.__module__ for d in self.definitions.values()}
        )
        self._context.set_forkserver_preload(modules)
        try:
            await asyncio.to_thread(forkserver.ensure_running)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot start the processes that run def handlers ({exc}): they need a writable "
                "temporary directory (TMPDIR, else /tmp)"
            ) from None

    async def run(self, job: dict[str, Any], limit: float, progress: ProgressSink) -> dict[str, Any]:
        """Run one job in a child: its ``result`` or ``failure`` message. Raises TimeoutError past
        ``limit`` seconds from the handler's start, ``ChildDied`` if the child ended first;
        either way, as on cancellation, the child is gone when this returns."""
        child = self._idle.pop() if self._idle else await self._spawn()
        self._busy.add(child)
        try:
            await child.send({"job": job})
            async with asyncio.timeout(limit):
                reply = await self._exchange(child, progress)
        except BaseException:
            self._busy.discard(child)
            await self._end(child, kill=True)
            raise
        self._busy.discard(child)
        if reply is None:
            code = await self._end(child, kill=False)
            raise ChildDied(f"the process running the handler {_exit_text(code)}")
        self._idle.append(child)
        return reply

    async def _exchange(self, child: _Child, progress: ProgressSink) -> dict[str, Any] | None:
        while (message := await child.receive()) is not None:
            if "progress" not in message:
                return message
            try:
                await progress(message["progress"])
            except Exception as exc:  # the handler sees it raised by set_progress_sync
                await child.send({"progress_done": f"{type(exc).__name__}: {exc}"})
            else:
                await child.send({"progress_done": None})
        return None

    async def _spawn(self) -> _Child:
        async with self._spawning:  # multiprocessing's bookkeeping is not thread-safe
            parent_end, child_end = socket.socketpair()
            process = self._context.Process(
                target=child_process.main,
                args=(child_end, self.definitions, self.max_bytes),
                name="jobqueue-def-handler",
                daemon=True,
            )
            try:
                await asyncio.to_thread(process.start)
            except Exception as exc:
                parent_end.close()
                raise ChildStartError(f"could not start a process for the handler: {exc}") from exc
            finally:
                child_end.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        child = _Child(process, reader, writer)
        try:
            async with asyncio.timeout(START_SECONDS):
                ready = await child.receive()
        except BaseException:
            await self._end(child, kill=True)
            raise
        if ready is None:
            code = await self._end(child, kill=False)
            raise ChildStartError(f"the process for the handler {_exit_text(code)} while starting")
        return child

    async def _end(self, child: _Child, *, kill: bool) -> int | None:
        """Kill (or let go of) a child and wait until it is gone; its exit code."""
        if kill:
            with contextlib.suppress(ProcessLookupError, AttributeError):
                child.process.kill()
        child.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(child.writer.wait_closed(), KILL_SECONDS)
        return await _reaped(child.process)

    async def aclose(self) -> None:
        """Kill every child. A busy one is ended by its job's cancellation already; one left busy
        (its job's task did not get there) is killed all the same."""
        for child in self._busy:
            with contextlib.suppress(ProcessLookupError, AttributeError):
                child.process.kill()
        children, self._idle = self._idle, []
        await asyncio.gather(*(self._end(c, kill=True) for c in children))


async def _reaped(process: BaseProcess) -> int | None:
    """Wait (bounded) until the fork server reports the child's end: then it runs no more."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def reported() -> None:
        if not ended.done():
            ended.set_result(None)

    try:
        loop.add_reader(process.sentinel, reported)
    except (ValueError, OSError):  # already reaped and its sentinel closed
        return process.exitcode
    try:
        await asyncio.wait_for(ended, KILL_SECONDS)
    except TimeoutError:
        log.error("a handler process (pid %s) did not end within %ss of SIGKILL", process.pid, KILL_SECONDS)
        return None
    finally:
        loop.remove_reader(process.sentinel)
    process.join(0)
    code = process.exitcode
    process.close()
    return code


def _exit_text(code: int | None) -> str:
    if code is None:
        return "ended"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"
