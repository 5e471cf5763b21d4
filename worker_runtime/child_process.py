"""The child process that runs a worker's plain ``def`` handlers, one job at a time.

A thread cannot be stopped, so ``def`` handlers run here, where the worker can kill them: a hung
handler past its timeout costs one child, not the worker (Celery's prefork pool and RQ's work
horse do the same). The worker talks to its child over a socket pair, one JSON message per frame
(a 4-byte big-endian length, then UTF-8 JSON):

| from    | message                                  | meaning                                     |
| ------- | ---------------------------------------- | ------------------------------------------- |
| child   | ``{"ready": pid}``                       | started; send a job                         |
| worker  | ``{"job": {id, name, payload, ...}}``    | run it (payload is the stored JSON text)    |
| child   | ``{"progress": json}``                   | the handler reported progress; wait         |
| worker  | ``{"progress_done": error or null}``     | recorded (or why not)                       |
| child   | ``{"result": json}``                     | the handler returned this                   |
| child   | ``{"failure": {message, traceback, permanent}}`` | it raised, or its result is unusable |
| child   | ``{"rate_limited": {retry_after, hold_queue}}`` | it raised ``RateLimited``: not a failure |

Children are forked by multiprocessing's fork server (a clean process started without the
worker's threads, the handlers' modules preloaded), get the handler definitions at start, ignore
Ctrl-C (the worker decides what a signal means) and die with their parent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from worker_runtime import handler_call
from worker_runtime.app import JobContext, JobDefinition, encode_payload
from worker_runtime.errors import JobQueueError, RateLimited

FRAME = struct.Struct("!I")
_PR_SET_PDEATHSIG = 1


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(FRAME.pack(len(data)) + data)


def receive(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the worker closed its end."""
    header = _read(sock, FRAME.size)
    if header is None:
        return None
    body = _read(sock, FRAME.unpack(header)[0])
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def _read(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main(sock: socket.socket, definitions: dict[str, JobDefinition], max_bytes: int) -> None:
    """The child's life: say ready, then run jobs until the worker closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    send(sock, {"ready": os.getpid()})
    while (message := receive(sock)) is not None:
        send(sock, run(sock, definitions, message["job"], max_bytes))


def run(
    sock: socket.socket, definitions: dict[str, JobDefinition], job: dict[str, Any], max_bytes: int
) -> dict[str, Any]:
    definition = definitions[job["name"]]

    def report(progress: Any) -> None:
        send(sock, {"progress": encode_payload(progress, max_bytes)})
        answer = receive(sock)
        if answer is None:
            raise SystemExit(0)  # the worker is gone: so is the job
        if answer.get("progress_done"):
            raise JobQueueError(f"progress not recorded: {answer['progress_done']}")

    ctx = JobContext(
        job["queue"], job["id"], job["name"], job["attempt"], job["attempts"], _report_progress_sync=report
    )
    try:
        result = definition.handler(ctx, handler_call.argument(definition, job["payload"]))
        return {"result": handler_call.encode_result(result, max_bytes)}
    except RateLimited as limited:  # the worker postpones the job, as for an async handler
        return {"rate_limited": {"retry_after": limited.retry_after, "hold_queue": limited.hold_queue}}
    except BaseException as exc:
        failure = handler_call.Failure.of(exc)
        return {"failure": {"message": failure.message, "traceback": failure.traceback,
                            "permanent": failure.permanent}}  # fmt: skip


def _die_with_parent() -> None:
    """The parent is the fork server, which ends when the worker does: a handler must not outlive
    its worker (its job is recovered and run elsewhere)."""
    parent = os.getppid()
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it ended before the line above
            os._exit(1)
        return

    def watch() -> None:  # elsewhere: look every half second
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="jobqueue-parent-watch", daemon=True).start()
