"""The dev control loop: the operator's probe -> policy -> actuator pass, over local worker processes.

``DevLoop`` probes every queue in one round trip, then runs ``scaling_pass.run_pass`` for each queue
whose polling interval is due, with a ``LocalActuator`` in place of the Deployment. A failed probe
passes ``None`` (the policy's fallback applies) and the loop carries on; it never crashes on a lost
Redis, and its client reconnects with backoff.

How a manifest says what to run locally (a pod template names an image, which dev mode cannot run):

| source, first match wins                                  | example                                   |
| --------------------------------------------------------- | ----------------------------------------- |
| annotation ``jobqueue.dev/dev-app``                       | ``examples.demo_app:app``                 |
| last ``module:attribute`` item of the first container's   | ``args: ["worker", "app:app"]``           |
| ``args``, else of its ``command``                         |                                           |

The first container's literal ``env`` entries (``value``, not ``valueFrom``) are passed to the local
workers too, under the JobQueue's own ``JOBQUEUE_*`` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobqueue_operator import member_pass, policy, scaling_pass, spec
from jobqueue_operator.dev.local_actuator import LocalActuator
from jobqueue_operator.metrics import OperatorMetrics
from worker_runtime import connection, probe
from worker_runtime.observation import QueueObservation

DEV_APP_ANNOTATION = f"{spec.GROUP}/dev-app"
# Seconds one probe may take before it counts as failed (the policy's fallback then applies).
PROBE_TIMEOUT_SECONDS = 5.0
_PROBE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *connection.TRANSIENT_ERRORS)
_APP_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ManifestError(ValueError):
    """A manifest dev mode cannot run: invalid, or without a local app to start."""


@dataclass(frozen=True)
class DevTarget:
    """One JobQueue to run locally: the validated object, the app its workers serve, their env."""

    jobqueue: spec.JobQueue
    app: str
    env: Mapping[str, str] = field(default_factory=dict)


def _first_container(jobqueue: spec.JobQueue) -> Mapping[str, Any]:
    template = jobqueue.spec.workers.template or {}
    containers = (template.get("spec") or {}).get("containers") or []
    return containers[0] if containers and isinstance(containers[0], Mapping) else {}


def dev_app(jobqueue: spec.JobQueue) -> str:
    """The ``module:attribute`` local workers run (see the module docstring for the convention)."""
    annotated = jobqueue.metadata.annotations.get(DEV_APP_ANNOTATION)
    if annotated:
        return annotated
    container = _first_container(jobqueue)
    for key in ("args", "command"):
        items = [str(item) for item in container.get(key) or []]
        found = [item for item in items if _APP_TARGET.match(item)]
        if found:
            return found[-1]
    raise ManifestError(
        f"JobQueue {jobqueue.metadata.name}: cannot tell which app to run locally; add the annotation "
        f"{DEV_APP_ANNOTATION}: <module:attribute>, or name it in the first container's args"
    )


def container_env(jobqueue: spec.JobQueue) -> dict[str, str]:
    """Literal ``env`` values of the first container (``valueFrom`` needs a cluster; skipped)."""
    entries = _first_container(jobqueue).get("env") or []
    return {
        str(e["name"]): str(e["value"])
        for e in entries
        if isinstance(e, Mapping) and "name" in e and "value" in e
    }


def targets_from_documents(documents: Iterable[Any]) -> list[DevTarget]:
    """The JobQueues among parsed YAML documents (other kinds are ignored), validated."""
    targets: list[DevTarget] = []
    for document in documents:
        if not isinstance(document, Mapping) or document.get("kind") != spec.KIND:
            continue
        try:
            jobqueue = spec.parse_jobqueue(document)
        except spec.SpecError as exc:
            name = (document.get("metadata") or {}).get("name", "?")
            raise ManifestError(f"JobQueue {name}: {exc}") from None
        targets.append(DevTarget(jobqueue, dev_app(jobqueue), container_env(jobqueue)))
    names = [t.jobqueue.queue_name for t in targets]
    if len(set(names)) != len(names):
        raise ManifestError(f"two JobQueues serve the same queue: {sorted(names)}")
    return targets


def load_targets(paths: Iterable[Path]) -> list[DevTarget]:
    """Read multi-document YAML files and return their JobQueues."""
    documents: list[Any] = []
    for path in paths:
        try:
            documents.extend(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ManifestError(f"{path}: {exc}") from None
    targets = targets_from_documents(documents)
    if not targets:
        raise ManifestError(f"no JobQueue in {', '.join(map(str, paths))}")
    return targets


@dataclass
class QueueRun:
    """One queue's share of the loop: policy state, actuator, last pass and running figures."""

    target: DevTarget
    actuator: LocalActuator
    state: policy.PolicyState = field(default_factory=policy.PolicyState)
    last: scaling_pass.PassResult | None = None
    last_observation: QueueObservation | None = None
    next_due: float = 0.0
    passes: int = 0
    probe_failures: int = 0
    worst_age_s: float = 0.0
    scale_events: int = 0

    @property
    def jobqueue(self) -> spec.JobQueue:
        return self.target.jobqueue

    @property
    def name(self) -> str:
        return self.jobqueue.queue_name

    @property
    def slo_seconds(self) -> int | None:
        return self.jobqueue.spec.scaling.targets.max_oldest_age

    @property
    def desired(self) -> int:
        return self.last.decision.desired if self.last is not None else 0

    @property
    def labels(self) -> tuple[str, str, str]:
        """The operator's metric labels of this queue (namespace ``default`` unless the manifest says)."""
        meta = self.jobqueue.metadata
        return (meta.namespace or "default", meta.name, self.name)

    @property
    def reason(self) -> str:
        return self.last.decision.reason if self.last is not None else "starting"


class DevLoop:
    """Runs the control pass for every queue until stopped; ``aclose`` drains every worker."""

    def __init__(
        self,
        targets: Iterable[DevTarget],
        redis_url: str,
        *,
        log_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_pass: Callable[[DevLoop], None] | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.metrics = metrics
        self.clock = clock
        self.on_pass = on_pass
        self.runs = [
            QueueRun(t, LocalActuator(t.jobqueue, redis_url, t.app, env=t.env, log_dir=log_dir, clock=clock))
            for t in targets
        ]
        self.started_at = clock()
        # Its loop backs off on its own (a failed probe is a pass with no observation): no retries.
        self.client: connection.AsyncClient = connection.connect(redis_url, retries=0)

    def run_for(self, queue: str) -> QueueRun:
        return next(r for r in self.runs if r.name == queue)

    async def probe(self) -> dict[str, QueueObservation] | None:
        """One round trip for all queues; None when Redis cannot be reached."""
        try:
            return await asyncio.wait_for(
                probe.probe_queues(self.client, [r.name for r in self.runs]), PROBE_TIMEOUT_SECONDS
            )
        except _PROBE_ERRORS:
            return None

    async def step(self) -> None:
        """Probe, then one control pass for each queue whose polling interval is due."""
        now = self.clock()
        due = [r for r in self.runs if r.next_due <= now]
        if not due:
            return
        observations = await self.probe()
        now = self.clock()
        for run in due:
            observation = observations.get(run.name) if observations is not None else None
            await self._pass(run, observation, now)
        if self.on_pass is not None:
            self.on_pass(self)

    async def _pass(self, run: QueueRun, observation: QueueObservation | None, now: float) -> None:
        if observation is None:
            run.probe_failures += 1
        else:
            run.last_observation = observation
            run.worst_age_s = max(run.worst_age_s, observation.oldest_ready_age_s)
        paused = spec.paused_by(run.jobqueue) is not None
        result = await scaling_pass.run_pass(
            run.jobqueue, observation, run.actuator, run.state, now, paused=paused
        )
        run.state = result.decision.state
        run.last = result
        if self.metrics is not None:  # the operator's series, so a local Prometheus can scrape them
            self.metrics.serving(run.labels)
            if observation is None:
                self.metrics.probe_errors.labels(*run.labels).inc()
            member_pass.record_metrics(self.metrics, run.jobqueue, result, run.labels)
        run.passes += 1
        run.scale_events += int(result.scaled)
        run.next_due = now + run.jobqueue.spec.scaling.polling_interval

    async def run(self, stop: asyncio.Event) -> None:
        """Step until ``stop`` is set, waking when the next queue is due."""
        while not stop.is_set():
            await self.step()
            pause = min(r.next_due for r in self.runs) - self.clock()
            for run in self.runs:
                run.actuator.reap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, min(pause, 0.25)))

    async def aclose(self, within: float | None = None) -> bool:
        """Drain every worker (SIGTERM, graceful), close the client; True if none had to be killed."""
        results = await asyncio.gather(
            *(
                r.actuator.aclose(within if within is not None else r.actuator.grace_seconds + 5)
                for r in self.runs
            )
        )
        with contextlib.suppress(Exception):
            await self.client.aclose()
        return all(results)
