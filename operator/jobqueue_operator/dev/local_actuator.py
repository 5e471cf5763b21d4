"""The local actuator: worker processes on this machine instead of a Deployment's pods.

It implements ``scaling_pass.Actuator`` so ``jobqueue dev`` runs the operator's own control pass. Each
replica is one ``python -m worker_runtime worker <app>`` process with the JobQueue's ``JOBQUEUE_*``
environment, a unique ``JOBQUEUE_POD_NAME`` (``<queue>-local-<n>``) and no metrics server.

Scale-down picks workers with ``scaling_pass.removal_order`` over the heartbeats they publish (idle
first; a process that has not reported yet has no jobs) and sends them SIGTERM: they stop claiming
and finish their jobs within the grace period. They are reaped in the background, on every call,
never awaited by the loop. Terminating processes do not count as replicas, so they are neither
counted twice nor picked again; one that outlives its grace period is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from jobqueue_operator import scaling_pass, spec
from worker_runtime.observation import QueueObservation, WorkerHeartbeat

# Seconds past the workers' grace period before a terminating process is killed outright.
KILL_MARGIN_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


@dataclass
class WorkerProcess:
    """One local worker: its pod name, process and when it was asked to stop."""

    pod: str
    process: subprocess.Popen[bytes]
    started_at: float
    log: IO[bytes] | None = None
    stopping_since: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class Removal:
    """A worker chosen for a scale-down and its in-flight jobs at that moment (-1: not reported yet)."""

    pod: str
    inflight: int
    at: float


@dataclass(frozen=True)
class Exit:
    """A worker process that ended: how, and whether it had been asked to stop."""

    pod: str
    returncode: int
    requested: bool
    killed_after_grace: bool


@dataclass
class ActuatorStats:
    started: int = 0
    removals: list[Removal] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    peak: int = 0

    @property
    def unexpected_exits(self) -> list[Exit]:
        """Workers that died without being asked to (killed, crashed)."""
        return [e for e in self.exits if not e.requested]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the dev process dies, so no worker is orphaned."""
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalActuator:
    """Starts and stops worker processes for one JobQueue (``scaling_pass.Actuator``)."""

    def __init__(
        self,
        jobqueue: spec.JobQueue,
        redis_url: str,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        python: str = sys.executable,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobqueue = jobqueue
        self.redis_url = redis_url
        self.app = app
        self.extra_env = dict(env or {})
        self.log_dir = log_dir
        self.python = python
        self.clock = clock
        self.grace_seconds = float(jobqueue.termination_grace_period_seconds)
        self.running: dict[str, WorkerProcess] = {}
        self.terminating: dict[str, WorkerProcess] = {}
        self.stats = ActuatorStats()
        self._counter = 0

    @property
    def queue(self) -> str:
        return self.jobqueue.queue_name

    # --- scaling_pass.Actuator -------------------------------------------------------------

    async def current_replicas(self) -> int:
        self.reap()
        return len(self.running)

    async def ready_replicas(self) -> int | None:
        """Running processes that are alive (``scaling_pass.CountsReady``): a local worker serves
        within a second of its start, well inside a polling interval."""
        self.reap()
        return sum(1 for worker in self.running.values() if worker.process.poll() is None)

    async def scale(self, desired: int, observation: QueueObservation | None) -> None:
        self.reap()
        desired = max(0, desired)
        while len(self.running) < desired:
            self._spawn()
        surplus = len(self.running) - desired
        if surplus > 0:
            heartbeats = observation.workers if observation is not None else ()
            for pod, inflight in self._removal_candidates(heartbeats)[:surplus]:
                self._terminate(pod, inflight)
        self.stats.peak = max(self.stats.peak, len(self.running))

    # --- processes -------------------------------------------------------------------------

    def worker_env(self, pod: str) -> dict[str, str]:
        """Environment of one worker: the container's literal env, then the JobQueue's JOBQUEUE_*."""
        env = dict(os.environ) | self.extra_env | self.jobqueue.worker_env()
        env |= {
            "JOBQUEUE_REDIS_URL": self.redis_url,
            "JOBQUEUE_POD_NAME": pod,
            "JOBQUEUE_METRICS_PORT": "0",
            "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p),
        }
        return env

    def _spawn(self) -> WorkerProcess:
        self._counter += 1
        pod = f"{self.queue}-local-{self._counter}"
        log: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"{pod}.log").open("ab")
        process = subprocess.Popen(
            [self.python, "-m", "worker_runtime", "worker", self.app],
            env=self.worker_env(pod),
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches dev mode only, which drains the workers.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # prctl only: safe between fork and exec
        )
        worker = WorkerProcess(pod, process, self.clock(), log)
        self.running[pod] = worker
        self.stats.started += 1
        return worker

    def _removal_candidates(self, heartbeats: tuple[WorkerHeartbeat, ...]) -> list[tuple[str, int]]:
        """Running pods in removal order: silent ones (still starting, no jobs) then idle-first."""
        reported = {hb.pod: hb for hb in heartbeats if hb.pod in self.running}
        silent = [pod for pod in reversed(self.running) if pod not in reported]
        ordered = scaling_pass.removal_order(reported.values())
        return [(pod, -1) for pod in silent] + [(hb.pod, hb.inflight) for hb in ordered]

    def _terminate(self, pod: str, inflight: int) -> None:
        worker = self.running.pop(pod)
        worker.stopping_since = self.clock()
        self.terminating[pod] = worker
        self.stats.removals.append(Removal(pod, inflight, worker.stopping_since))
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        """Collect processes that ended; kill terminating ones past their grace period."""
        now = self.clock()
        for pods, requested in ((self.running, False), (self.terminating, True)):
            for pod, worker in list(pods.items()):
                code = worker.process.poll()
                overdue = (
                    requested
                    and worker.stopping_since is not None
                    and now - worker.stopping_since > self.grace_seconds + KILL_MARGIN_SECONDS
                )
                if code is None and overdue:
                    worker.process.kill()
                    code = worker.process.wait()
                if code is not None:
                    del pods[pod]
                    self._closed(worker, code, requested, killed=code is not None and overdue)

    def _closed(self, worker: WorkerProcess, code: int, requested: bool, *, killed: bool) -> None:
        if worker.log is not None:
            worker.log.close()
        self.stats.exits.append(Exit(worker.pod, code, requested, killed))

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the running (not terminating) workers, by pod name."""
        return {pod: worker.pid for pod, worker in self.running.items()}

    @property
    def alive(self) -> int:
        """Processes not yet reaped, terminating ones included."""
        return len(self.running) + len(self.terminating)

    def stop_all(self) -> None:
        """SIGTERM every running worker (they drain); ``reap`` or ``wait_closed`` collects them."""
        for pod in list(self.running):
            self._terminate(pod, -1)

    async def aclose(self, within: float) -> bool:
        """SIGTERM every worker and wait until all ended, killing stragglers after ``within`` seconds.

        True when every worker stopped on its own within the timeout."""
        self.stop_all()
        deadline = time.monotonic() + within
        while self.terminating and time.monotonic() < deadline:
            self.reap()
            await asyncio.sleep(0.05)
        clean = not self.terminating
        for worker in list(self.terminating.values()):
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            worker.process.wait()
        self.reap()
        return clean
