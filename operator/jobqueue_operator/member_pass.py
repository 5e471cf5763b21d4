"""One JobQueue's turn in a control-loop batch: its Deployment, its scaling pass, its status.

``PassRunner.act`` runs, for a member the batch planned a pass for:

1. for a pod template, ``deployment_sync.sync`` (create or update the owned Deployment, or refuse:
   a foreign Deployment of that name, or the API server's refusal);
2. ``scaling_pass.run_pass`` against a ``KubeActuator`` over that Deployment;
3. what the Deployment reports of its pods (``readiness``): ready replicas for the policy, and
   ``Ready=False, WorkersNotReady`` when too few are ready for too long;
4. the status keys that changed, the conditions, Events (Normal ones for what was done, a Warning
   for each new problem), and the metrics, conditions included.

``PassRunner.report`` writes the conditions of a member that gets no pass (an invalid spec, a
conflict, a missing referenced Deployment); replicas are left alone. Every write goes through the
operator's gated API client, so nothing here is written by a replica that is not the leader.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator import (
    deployment_sync,
    flow_bounds,
    kube_api,
    readiness,
    scaling_pass,
    served,
    spec,
    status,
    tunables,
    worker_deployment,
)
from jobqueue_operator.kube_actuator import KubeActuator
from jobqueue_operator.metrics import OperatorMetrics
from worker_runtime.observation import QueueObservation

logger = logging.getLogger(__name__)

Body = dict[str, Any]
Event = tuple[str, str, str]
# Keys of a listed Deployment a pass reads (the rest of the body is dropped right away).
_META_KEYS: Final = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "annotations",
    "ownerReferences",
)


def slim(deployment: Mapping[str, Any]) -> Body:
    """What a pass reads of a Deployment: identity, labels, owner, replicas, selector, status."""
    meta = deployment.get("metadata") or {}
    deployment_spec = deployment.get("spec") or {}
    return {
        "metadata": {key: meta[key] for key in _META_KEYS if key in meta},
        "spec": {
            "replicas": deployment_spec.get("replicas", 1),
            "selector": deployment_spec.get("selector") or {},
        },
        "status": dict(deployment.get("status") or {}),
    }


@dataclass(slots=True)
class Pass:
    """One member's pass in a batch: its Deployment as listed (None: not found by the listing)."""

    member: served.ServedJobQueue
    jobqueue: spec.JobQueue
    listed: Body | None
    blocked: status.Problem | None = None
    observation: QueueObservation | None = None
    problem: status.Problem | None = None

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.member.namespace, self.member.name, self.jobqueue.queue_name)

    @property
    def owned(self) -> bool:
        return self.jobqueue.spec.workers.template is not None


def record_metrics(
    metrics: OperatorMetrics,
    jobqueue: spec.JobQueue,
    result: scaling_pass.PassResult,
    labels: tuple[str, str, str],
) -> None:
    m = metrics
    obs = result.observation
    m.redis_up.labels(*labels).set(0 if obs is None else 1)
    if obs is not None:
        m.waiting.labels(*labels).set(obs.waiting)
        m.delayed.labels(*labels).set(obs.delayed + obs.retrying)
        m.active.labels(*labels).set(obs.active)
        m.dead.labels(*labels).set(obs.dead)
        m.oldest_age.labels(*labels).set(obs.oldest_ready_age_s)
        m.claims_paused.labels(*labels).set(1 if obs.flow.paused else 0)
        held = flow_bounds.limits_hold(obs, result.decision.kind.value)
        m.rate_limited.labels(*labels).set(1 if held else 0)
        m.breakers(labels, (b.job for b in obs.breakers))
        m.group_held.labels(*labels).set(obs.group_held)
    target = jobqueue.spec.scaling.targets.max_oldest_age
    if target is not None:
        m.age_target.labels(*labels).set(target)
    m.throughput.labels(*labels).set(result.decision.state.throughput or 0.0)
    m.desired.labels(*labels).set(result.decision.desired)
    if result.replicas is not None:
        m.current.labels(*labels).set(result.replicas.current)
        m.ready.labels(*labels).set(result.replicas.ready)
        m.available.labels(*labels).set(result.replicas.available)
    m.max_replicas.labels(*labels).set(jobqueue.spec.scaling.max_replicas)
    if result.scaled:
        m.scale_events.labels(*labels, result.decision.direction.value, result.decision.kind.value).inc()


class PassRunner:
    """Acts for and reports on members, at most ``loop.pass_concurrency`` at once."""

    def __init__(
        self, jobqueues: served.ServedJobQueues, metrics: OperatorMetrics, settings: tunables.Tunables
    ) -> None:
        self.jobqueues = jobqueues
        self.metrics = metrics
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.loop.pass_concurrency)
        self._open_breakers: dict[served.Key, frozenset[str]] = {}

    # ------------------------------------------------------------------ a pass

    async def act(self, api: kube_api.KubeApi, item: Pass, started: float, now: float) -> None:
        """Deployment, decision, scaling, status, Events and metrics; failures wait for the next tick."""
        member, jobqueue = item.member, item.jobqueue
        async with self._slots:
            try:
                events: list[Event] = []
                deployment = item.listed
                if item.owned:
                    if member.wanted is None:
                        member.wanted = worker_deployment.Stamp.of(
                            worker_deployment.worker_deployment(jobqueue)
                        )
                    synced = await deployment_sync.sync(api, jobqueue, item.listed, member.wanted)
                    events += synced.events
                    if synced.problem is not None:
                        member.redis_target = None
                        refused = status.refused_conditions(synced.problem)
                        paused = status.paused_condition(member.paused_by)
                        await self._write(api, member, {}, [*refused, paused], now, events)
                        member.last_pass = now
                        return
                    deployment = synced.deployment
                if deployment is None:
                    return
                await self._scale(api, item, slim(deployment), now, events)
            except kube_api.NotLeading:
                return  # leadership was lost during the pass: the new leader redoes it
            except Exception as exc:
                logger.warning("%s/%s: control pass failed, retrying: %s", member.namespace, member.name, exc)
            finally:
                self.metrics.decision_duration.observe(time.perf_counter() - started)

    async def _scale(
        self, api: kube_api.KubeApi, item: Pass, deployment: Body, now: float, events: list[Event]
    ) -> None:
        member, jobqueue = item.member, item.jobqueue
        actuator = KubeActuator(api, member.namespace, deployment)
        paused = member.paused_by is not None or item.blocked is not None
        result = await scaling_pass.run_pass(
            jobqueue, item.observation, actuator, member.policy_state(), now, paused=paused
        )
        result = dataclasses.replace(result, replicas=actuator.replicas)
        member.state = result.decision.state
        if self.jobqueues.get(member.key) is not member:
            return  # deleted during the pass: no status to write, no series to revive
        record_metrics(self.metrics, jobqueue, result, item.labels)
        if result.scaled:
            up = result.decision.desired > result.current
            word = status.EventReason.SCALED_UP if up else status.EventReason.SCALED_DOWN
            message = f"{result.decision.kind}: {result.decision.reason}"
            events.append((status.EventType.NORMAL, word, message))
            logger.info("%s/%s: %s %s", member.namespace, member.name, word, message)
        events += self._breaker_events(member.key, item.observation)
        fields = status.pass_status(result, jobqueue.metadata.generation, now)
        conditions = [
            *status.pass_conditions(
                result,
                item.blocked or item.problem,
                self._not_ready(member, result, now),
                age_target=jobqueue.spec.scaling.targets.max_oldest_age,
            ),
            status.paused_condition(member.paused_by),
        ]
        self._checkpoint_policy(member, fields, now)
        await self._write(api, member, fields, conditions, now, events)
        member.last_pass = now

    def _breaker_events(self, key: served.Key, observation: QueueObservation | None) -> list[Event]:
        """BreakerOpened / BreakerClosed for each job name whose breaker changed since the last probe."""
        if observation is None:
            return []
        now_open = frozenset(b.job for b in observation.breakers)
        before = self._open_breakers.get(key, frozenset())
        self._open_breakers[key] = now_open
        opened = [
            (status.EventType.WARNING, status.EventReason.BREAKER_OPENED,
             f"circuit breaker of job {b.job} opened: its claims stop until its cool-off ends")
            for b in observation.breakers if b.job not in before
        ]  # fmt: skip
        closed = [
            (status.EventType.NORMAL, status.EventReason.BREAKER_CLOSED,
             f"circuit breaker of job {job} closed: its jobs are claimed again")
            for job in sorted(before - now_open)
        ]  # fmt: skip
        return [*opened, *closed]

    def _not_ready(
        self, member: served.ServedJobQueue, result: scaling_pass.PassResult, now: float
    ) -> str | None:
        """The WorkersNotReady message, if the Deployment has been short of ready pods too long."""
        replicas = result.replicas
        if replicas is None:
            return None
        patience = self.settings.loop.workers_not_ready_seconds
        since = readiness.short_since(replicas, member.short_since, now)
        if since == now and member.short_since is None and _reported_not_ready(member.status):
            since = now - patience  # an earlier leader already said so: no second grace period
        member.short_since = since
        return readiness.not_ready(replicas, since, now, patience)

    # ------------------------------------------------------------------ no pass, only conditions

    async def report(
        self,
        api: kube_api.KubeApi,
        member: served.ServedJobQueue,
        updates: list[status.Condition],
        now: float,
    ) -> None:
        """Conditions of a member that gets no pass this time (replicas are left alone)."""
        async with self._slots:
            try:
                member.redis_target = None
                paused = status.paused_condition(member.paused_by)
                await self._write(api, member, {}, [*updates, paused], now, [])
                member.last_pass = now
            except kube_api.NotLeading:
                return
            except Exception as exc:
                logger.warning(
                    "%s/%s: status update failed, retrying: %s", member.namespace, member.name, exc
                )

    # ------------------------------------------------------------------ writing

    def _checkpoint_policy(self, member: served.ServedJobQueue, fields: dict[str, Any], now: float) -> None:
        """Add status.policy when other fields change, or every ``loop.policy_checkpoint_seconds``."""
        changed = bool(status.status_patch(member.status, fields)) or "policy" not in member.status
        written = member.policy_written_at
        if changed or written is None or now - written >= self.settings.loop.policy_checkpoint_seconds:
            fields["policy"] = member.policy_state().to_dict()
            member.policy_written_at = now

    def forget(self, key: served.Key) -> None:
        """Stop serving a JobQueue that is gone, and drop its metric series."""
        member = self.jobqueues.forget(key)
        self._open_breakers.pop(key, None)
        if member is not None:
            self.metrics.forget(member.namespace, member.name)

    async def _write(
        self,
        api: kube_api.KubeApi,
        member: served.ServedJobQueue,
        fields: Mapping[str, Any],
        updates: list[status.Condition],
        now: float,
        events: list[Event],
    ) -> None:
        """Patch the status keys that changed; post ``events`` and a Warning for each new problem."""
        old = status.parse_status({"status": member.status}).conditions
        merged = status.merge_conditions(old, updates, now)
        new = {**fields, "conditions": status.dump_conditions(merged)}
        patch = status.status_patch(member.status, new)
        if patch:
            written = await api.patch_jobqueue_status(member.namespace, member.name, patch)
            if written is None:  # deleted meanwhile: forget it, series included
                self.forget(member.key)
                return
            member.wrote(written)
        self.metrics.conditions(member.namespace, member.name, [(c.type, c.status) for c in merged])
        events.extend(
            (status.EventType.WARNING, reason, message)
            for reason, message in status.new_problems(old, merged)
        )
        for event_type, reason, message in events:
            try:
                await api.post_event(
                    member.namespace, status.event(member.reference, event_type, reason, message, now)
                )
            except kube_api.NotLeading:
                raise
            except Exception as exc:  # an Event is best effort
                logger.warning(
                    "%s/%s: posting the %s Event failed: %s", member.namespace, member.name, reason, exc
                )


def _reported_not_ready(current: Mapping[str, Any]) -> bool:
    ready = status.parse_status({"status": current}).condition(status.ConditionType.READY)
    return ready is not None and ready.reason == status.Reason.WORKERS_NOT_READY
