"""The operator's one control loop: every tick, a pass for each JobQueue whose pollingInterval is due.

One asyncio task for the whole operator (started by the startup handler) instead of a kopf timer
per object: a timer is a task, a daemon record and a log line per object and tick, and each of its
passes read its own Deployment and listed the namespace's HPAs. A tick takes the due members of the
``fleet`` and runs them as one batch:

1. per namespace, one LIST of the owned worker Deployments (by the ``managed-by`` label) and one
   LIST of HorizontalPodAutoscalers; a Deployment named by ``spec.workers.deploymentRef`` is read
   on its own;
2. per Secret, the Redis URL (``secrets.UrlCache`` reuses it for 10 s);
3. per Redis URL, one pipelined probe of all its queues (``prober``);
4. per member, at most ``PASS_CONCURRENCY`` at once, ``control.control_pass``, then the status
   keys that changed, the conditions, Events (Warning on a new problem, ScaledUp/ScaledDown) and
   metrics.

A batch runs in the background, so the next tick starts on time, and a member joins no other batch
until its pass is over: an unreachable Redis URL holds up only its own queues. A pass that fails
(an API error) is retried on the next tick; a member whose owned Deployment does not exist yet
waits, without a pass, for the ``workers`` handler to create it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator import builders, control, kube_api, secrets, spec
from jobqueue_operator.fleet import TICK_SECONDS, Fleet, Member
from jobqueue_operator.kube_actuator import KubeActuator, conflicting_hpa
from jobqueue_operator.metrics import OperatorMetrics
from jobqueue_operator.prober import ProbeError, Prober
from jobqueue_operator.status import Condition, ConditionStatus, ConditionType, parse_status
from worker_runtime.observation import QueueObservation

logger = logging.getLogger(__name__)

# Passes acting and writing at once: enough to keep the API client's 20 connections busy, few
# enough that a tick over thousands of objects does not hold thousands of coroutines.
PASS_CONCURRENCY: Final = 32
# status.policy is rewritten at least this often while nothing else changes (a restart loses less).
POLICY_CHECKPOINT_SECONDS: Final = 30.0
OWNED_SELECTOR: Final = f"app.kubernetes.io/managed-by={builders.MANAGED_BY}"

Degradation = tuple[str, str]
Body = dict[str, Any]


def _slim(deployment: Mapping[str, Any]) -> Body:
    """What an actuator reads of a Deployment (the listed bodies are dropped right away)."""
    deployment_spec = deployment.get("spec") or {}
    return {
        "metadata": {"name": deployment["metadata"]["name"]},
        "spec": {
            "replicas": deployment_spec.get("replicas", 1),
            "selector": deployment_spec.get("selector") or {},
        },
    }


@dataclass(slots=True)
class Namespace:
    """What one batch read of a namespace: its worker Deployments by name and its HPAs."""

    deployments: dict[str, Body]
    hpas: list[Body]


@dataclass(slots=True)
class Pass:
    """One member's pass in a batch, once its Deployment is known."""

    member: Member
    jobqueue: spec.JobQueue
    actuator: KubeActuator
    blocked: Degradation | None
    observation: QueueObservation | None = None
    problem: Degradation | None = None

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.member.namespace, self.member.name, self.jobqueue.queue_name)


def problems(conditions: Iterable[Condition]) -> dict[ConditionType, tuple[str, str]]:
    """Conditions that are bad news: Degraded=True and SpecValid=False, by type."""
    bad = {ConditionType.DEGRADED: ConditionStatus.TRUE, ConditionType.SPEC_VALID: ConditionStatus.FALSE}
    return {c.type: (c.reason, c.message) for c in conditions if bad.get(c.type) == c.status}


def scale_reason(result: control.PassResult) -> str:
    """A short, bounded label for a scale change (the Decision's reason is free text)."""
    text = result.decision.reason
    if result.observation is None:
        return "fallback"
    for needle, label in (
        ("scale to zero", "cooldown"),
        ("activated", "activation"),
        ("scale down", "stabilized"),
    ):
        if needle in text:
            return label
    if "oldest age" in text or "λ=" in text:
        return "age"
    return "backlog" if "backlog" in text else "inflight"


def record_metrics(
    metrics: OperatorMetrics,
    jobqueue: spec.JobQueue,
    result: control.PassResult,
    labels: tuple[str, str, str],
) -> None:
    m = metrics
    obs = result.observation
    if obs is not None:
        m.waiting.labels(*labels).set(obs.waiting)
        m.delayed.labels(*labels).set(obs.delayed + obs.retry)
        m.active.labels(*labels).set(obs.active)
        m.dead.labels(*labels).set(obs.dead)
        m.oldest_age.labels(*labels).set(obs.oldest_ready_age_s)
    target = jobqueue.spec.scaling.targets.max_oldest_age
    if target is not None:
        m.age_target.labels(*labels).set(target)
    m.throughput.labels(*labels).set(result.decision.state.throughput or 0.0)
    m.desired.labels(*labels).set(result.decision.desired)
    m.current.labels(*labels).set(result.decision.desired if result.scaled else result.current)
    m.max_replicas.labels(*labels).set(jobqueue.spec.scaling.max_replicas)
    if result.scaled:
        m.scale_events.labels(*labels, result.decision.direction.value, scale_reason(result)).inc()


class ControlLoop:
    """Runs the due passes of a fleet every ``tick`` seconds; ``start()`` in the operator's loop."""

    def __init__(
        self,
        fleet: Fleet,
        metrics: OperatorMetrics,
        api: Callable[[], kube_api.KubeApi],
        *,
        prober: Prober | None = None,
        secret_urls: secrets.UrlCache | None = None,
        tick: float = TICK_SECONDS,
        concurrency: int = PASS_CONCURRENCY,
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.api = api
        self.prober = prober if prober is not None else Prober()
        self.secret_urls = secret_urls if secret_urls is not None else secrets.UrlCache()
        self.tick_seconds = tick
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jobqueue control loop")

    async def stop(self) -> None:
        """Cancel the loop and the batches in flight, then close the Redis clients."""
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        await self.prober.close()

    async def _run(self) -> None:
        clock = asyncio.get_running_loop()
        while True:
            started = clock.time()
            self.tick(time.time())
            await asyncio.sleep(max(0.0, self.tick_seconds - (clock.time() - started)))

    def tick(self, now: float) -> asyncio.Task[None] | None:
        """Start a batch of the members due at ``now`` (``None`` when none is)."""
        due = self.fleet.due(now)
        if not due:
            return None
        for member in due:
            member.busy = True
        task = asyncio.create_task(self.run_batch(due, now), name="jobqueue control passes")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        return task

    # ------------------------------------------------------------------ one batch

    async def run_batch(self, members: list[Member], now: float) -> None:
        started = time.perf_counter()
        try:
            api = self.api()
            by_namespace: dict[str, list[Member]] = defaultdict(list)
            for member in members:
                by_namespace[member.namespace].append(member)
            listed = await asyncio.gather(
                *(self._namespace(api, ns, group) for ns, group in by_namespace.items())
            )
            views = dict(zip(by_namespace, listed, strict=True))
            reports: list[Awaitable[None]] = []
            passes: list[Pass] = []
            for member in members:
                self._plan(api, member, views.get(member.namespace), now, passes, reports)
            by_url = await self._urls(api, passes)
            await asyncio.gather(
                *reports,
                *(self._observe_and_act(api, url, group, started, now) for url, group in by_url.items()),
            )
        except Exception as exc:  # the API is unreachable or not logged in yet: the next tick retries
            logger.warning("Control passes of %d JobQueues failed: %s", len(members), exc)
        finally:
            for member in members:
                member.busy = False

    async def _namespace(
        self, api: kube_api.KubeApi, namespace: str, members: list[Member]
    ) -> Namespace | None:
        """One LIST of owned Deployments and one of HPAs (and a GET per referenced Deployment)."""
        try:
            owned, hpas = await asyncio.gather(
                api.list_deployments(namespace, OWNED_SELECTOR), api.list_hpas(namespace)
            )
            deployments = {str(d["metadata"]["name"]): _slim(d) for d in owned}
            del owned
            referenced = {
                builders.worker_deployment_name(m.jobqueue)
                for m in members
                if m.jobqueue is not None and m.jobqueue.spec.workers.deployment_ref is not None
            } - set(deployments)
            for name, found in zip(
                referenced,
                await asyncio.gather(*(api.get_deployment(namespace, name) for name in referenced)),
                strict=True,
            ):
                if found is not None:
                    deployments[name] = _slim(found)
        except kube_api.ApiError as exc:
            logger.warning("Listing Deployments and HPAs of namespace %s failed: %s", namespace, exc)
            return None
        return Namespace(deployments, hpas)

    def _plan(
        self,
        api: kube_api.KubeApi,
        member: Member,
        view: Namespace | None,
        now: float,
        passes: list[Pass],
        reports: list[Awaitable[None]],
    ) -> None:
        """Sort a member into a pass, a report without a pass (invalid spec, missing Deployment), or
        nothing this tick (its namespace could not be read, its Deployment is still being created)."""
        jobqueue = member.jobqueue
        if jobqueue is None:
            error = member.error or spec.SpecError("spec", "unreadable")
            reports.append(self._report(api, member, builders.spec_invalid_conditions(error), now))
            return
        if view is None:
            return
        name = builders.worker_deployment_name(jobqueue)
        deployment = view.deployments.get(name)
        if deployment is None:
            if jobqueue.spec.workers.deployment_ref is not None:
                message = f"spec.workers.deploymentRef: Deployment {member.namespace}/{name} not found"
                degraded = builders.condition(ConditionType.DEGRADED, True, "DeploymentNotFound", message)
                reports.append(self._report(api, member, [degraded], now))
            return
        hpa = conflicting_hpa(view.hpas, name)
        blocked = None
        if hpa is not None:
            message = (
                f"HorizontalPodAutoscaler {hpa} also scales Deployment {name}; not scaling while it exists"
            )
            blocked = ("ConflictingHPA", message)
        passes.append(Pass(member, jobqueue, KubeActuator(api, member.namespace, deployment), blocked))

    async def _urls(self, api: kube_api.KubeApi, passes: list[Pass]) -> dict[str | None, list[Pass]]:
        """Passes by Redis URL; those whose Secret cannot be read come under ``None``, with the problem."""
        by_secret: dict[secrets.SecretKey, list[Pass]] = defaultdict(list)
        for item in passes:
            by_secret[secrets.key_of(item.jobqueue)].append(item)

        async def url(group: list[Pass]) -> str | None:
            try:
                return await self.secret_urls.redis_url(api, group[0].jobqueue)
            except secrets.SecretProblem as problem:
                for item in group:
                    item.problem = (problem.reason, problem.message)
                    self.metrics.probe_errors.labels(*item.labels).inc()
                return None

        groups = list(by_secret.values())
        by_url: dict[str | None, list[Pass]] = defaultdict(list)
        for found, group in zip(await asyncio.gather(*(url(g) for g in groups)), groups, strict=True):
            by_url[found].extend(group)
        return by_url

    async def _observe_and_act(
        self, api: kube_api.KubeApi, url: str | None, group: list[Pass], started: float, now: float
    ) -> None:
        if url is not None:
            try:
                found = await self.prober.probe_many(url, [item.jobqueue.queue_name for item in group])
            except ProbeError as error:
                found = {}
                for item in group:
                    item.problem = ("ProbeFailed", str(error))
                    self.metrics.probe_errors.labels(*item.labels).inc()
                    self.secret_urls.forget(item.jobqueue)  # the Secret may have been fixed since
            for item in group:
                item.observation = found.get(item.jobqueue.queue_name)
        await asyncio.gather(*(self._act(api, item, started, now) for item in group))

    # ------------------------------------------------------------------ one member

    async def _act(self, api: kube_api.KubeApi, item: Pass, started: float, now: float) -> None:
        """Decide and act, then status, conditions, Events and metrics; failures wait for the next tick."""
        member, jobqueue = item.member, item.jobqueue
        async with self._slots:
            try:
                paused = member.paused.status == ConditionStatus.TRUE or item.blocked is not None
                state = member.policy_state()
                result = await control.control_pass(
                    jobqueue, item.observation, item.actuator, state, now, paused=paused
                )
                member.state = result.decision.state
                if self.fleet.get(member.key) is not member:
                    return  # deleted during the pass: no status to write, no series to revive
                record_metrics(self.metrics, jobqueue, result, item.labels)
                events: list[tuple[str, str, str]] = []
                if result.scaled:
                    word = "ScaledUp" if result.decision.desired > result.current else "ScaledDown"
                    message = f"{result.current} -> {result.decision.desired}: {result.decision.reason}"
                    events.append(("Normal", word, message))
                    logger.info("%s/%s: %s %s", member.namespace, member.name, word, message)
                fields = builders.pass_status(result, jobqueue.metadata.generation, now)
                conditions = [*builders.pass_conditions(result, item.blocked or item.problem), member.paused]
                self._checkpoint_policy(member, fields, now)
                await self._write(api, member, fields, conditions, now, events)
                member.last_pass = now
            except Exception as exc:
                logger.warning("%s/%s: control pass failed, retrying: %s", member.namespace, member.name, exc)
            finally:
                self.metrics.decision_duration.observe(time.perf_counter() - started)

    async def _report(
        self, api: kube_api.KubeApi, member: Member, updates: list[Condition], now: float
    ) -> None:
        """Conditions of a member that gets no pass this time (replicas are left alone)."""
        async with self._slots:
            try:
                await self._write(api, member, {}, [*updates, member.paused], now, [])
                member.last_pass = now
            except Exception as exc:
                logger.warning(
                    "%s/%s: status update failed, retrying: %s", member.namespace, member.name, exc
                )

    def _checkpoint_policy(self, member: Member, fields: dict[str, Any], now: float) -> None:
        """Add status.policy when other fields change, or every POLICY_CHECKPOINT_SECONDS."""
        changed = bool(builders.status_patch(member.status, fields)) or "policy" not in member.status
        written = member.policy_written_at
        if changed or written is None or now - written >= POLICY_CHECKPOINT_SECONDS:
            fields["policy"] = member.policy_state().to_dict()
            member.policy_written_at = now

    async def _write(
        self,
        api: kube_api.KubeApi,
        member: Member,
        fields: Mapping[str, Any],
        updates: list[Condition],
        now: float,
        events: list[tuple[str, str, str]],
    ) -> None:
        """Patch the status keys that changed; post ``events`` and a Warning for each new problem."""
        old = parse_status({"status": member.status}).conditions
        merged = builders.merge_conditions(old, updates, now)
        new = {**fields, "conditions": builders.dump_conditions(merged)}
        patch = builders.status_patch(member.status, new)
        if patch:
            written = await api.patch_jobqueue_status(member.namespace, member.name, patch)
            if written is None:  # deleted meanwhile
                self.fleet.forget(member.key)
                return
            member.wrote(written)
        before = problems(old)
        for kind, (reason, message) in problems(merged).items():
            if before.get(kind) != (reason, message):
                events.append(("Warning", reason, message))
        for event_type, reason, message in events:
            try:
                await api.post_event(
                    member.namespace, builders.event(member.reference, event_type, reason, message, now)
                )
            except Exception as exc:  # an Event is best effort
                logger.warning(
                    "%s/%s: posting the %s Event failed: %s", member.namespace, member.name, reason, exc
                )
