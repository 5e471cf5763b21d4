"""kopf handlers of the JobQueue operator, registered by ``register(registry)`` (never at import).

* ``workers`` (create/resume/spec update): parse the spec, create or update the owned Deployment.
* ``poll`` (timer, every ``TICK_SECONDS``; a pass runs once the object's own pollingInterval has
  passed): read the Redis URL from its Secret, probe (batched), ``control.control_pass``, then
  status, conditions, Events and metrics.

Handlers are thin: builders are pure (``builders``), I/O lives in ``kube_api``, ``kube_actuator``,
``prober`` and ``secrets``, the decision in ``policy``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from prometheus_client import CollectorRegistry

from jobqueue_operator import builders, control, kube_api, policy, secrets, spec
from jobqueue_operator.kube_actuator import KubeActuator
from jobqueue_operator.metrics import OperatorMetrics
from jobqueue_operator.prober import ProbeError, Prober
from jobqueue_operator.status import Condition, ConditionStatus, ConditionType, parse_status
from worker_runtime.observation import QueueObservation

FINALIZER: Final = "jobqueue.dev/finalizer"
STORAGE_PREFIX: Final = "jobqueue.dev"
# The timer's base tick: a pass runs on the first tick at least pollingInterval after the last one.
TICK_SECONDS: Final = 1.0
# Retry delay after a failed pass (API error) and while the owned Deployment does not exist yet.
RETRY_SECONDS: Final = 1.0
# status.policy is rewritten at least this often while nothing else changes (a restart loses less).
POLICY_CHECKPOINT_SECONDS: Final = 30.0
CONTEXT_KEY: Final = "jobqueue"

Degradation = tuple[str, str]


@dataclass
class OperatorContext:
    """What the handlers share: the API connection, the batching prober and the metrics."""

    metrics: OperatorMetrics
    prober: Prober = field(default_factory=Prober)
    secret_urls: secrets.UrlCache = field(default_factory=secrets.UrlCache)
    connection: kopf.ConnectionInfo | None = None
    _api: kube_api.KubeApi | None = None

    def api(self) -> kube_api.KubeApi:
        if self._api is None:
            if self.connection is None:
                raise kopf.TemporaryError("not logged in to the API server yet", delay=RETRY_SECONDS)
            self._api = kube_api.KubeApi(self.connection)
        return self._api

    def login(self, info: kopf.ConnectionInfo) -> None:
        """Use new credentials from the next call on (the old session is closed at cleanup)."""
        self.connection = info
        self._api = None

    async def close(self) -> None:
        await self.prober.close()
        if self._api is not None:
            await self._api.close()


def context_of(memo: Mapping[str, Any]) -> OperatorContext:
    ctx = memo.get(CONTEXT_KEY)
    if not isinstance(ctx, OperatorContext):
        raise kopf.TemporaryError("the operator has not started up yet", delay=RETRY_SECONDS)
    return ctx


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """Our own finalizer and storage prefixes, Events on, quick but bounded retries."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "jobqueue-operator"
    settings.execution.default_backoff = 5
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    settings.watching.reconnect_backoff = 1.0


# ---------------------------------------------------------------------------- status helpers


def _old_conditions(body: Mapping[str, Any]) -> list[Condition]:
    return parse_status(body).conditions


def _problems(conditions: list[Condition]) -> dict[ConditionType, tuple[str, str]]:
    """Conditions that are bad news: Degraded=True and SpecValid=False, by type."""
    bad = {ConditionType.DEGRADED: ConditionStatus.TRUE, ConditionType.SPEC_VALID: ConditionStatus.FALSE}
    return {c.type: (c.reason, c.message) for c in conditions if bad.get(c.type) == c.status}


def write_status(
    body: kopf.Body,
    patch: kopf.Patch,
    fields: Mapping[str, Any],
    updates: list[Condition],
    now: float,
) -> None:
    """Patch the status keys that changed and post a Warning Event for each new problem."""
    old_status = dict(body.get("status") or {})
    old = _old_conditions(body)
    merged = builders.merge_conditions(old, updates, now)
    new = {**fields, "conditions": builders.dump_conditions(merged)}
    for key, value in builders.status_patch(old_status, new).items():
        patch.status[key] = value
    before = _problems(old)
    for kind, (reason, message) in _problems(merged).items():
        if before.get(kind) != (reason, message):
            kopf.warn(body, reason=reason, message=message)


# ---------------------------------------------------------------------------- the worker Deployment


async def ensure_workers(ctx: OperatorContext, body: kopf.Body, patch: kopf.Patch) -> None:
    """Create the owned Deployment, or bring its template up to date; replicas stay the timer's."""
    try:
        jobqueue = spec.parse_jobqueue(body)
        if jobqueue.spec.workers.deployment_ref is not None:
            return
        wanted = builders.worker_deployment(jobqueue)
    except spec.SpecError as error:
        write_status(body, patch, {}, builders.spec_invalid_conditions(error), time.time())
        return
    api = ctx.api()
    namespace = jobqueue.metadata.namespace or "default"
    existing = await api.get_deployment(namespace, wanted["metadata"]["name"])
    if existing is None:
        await api.create_deployment(namespace, wanted)
        kopf.info(body, reason="WorkersCreated", message=f"Deployment {wanted['metadata']['name']} created")
        return
    drift = builders.deployment_drift(existing, wanted)
    if drift is not None:
        await api.patch_deployment(namespace, wanted["metadata"]["name"], drift)
        kopf.info(body, reason="WorkersUpdated", message=f"Deployment {wanted['metadata']['name']} updated")


# ---------------------------------------------------------------------------- one control pass


def _due(memo: kopf.Memo, body: kopf.Body, now: float) -> bool:
    interval = ((body.get("spec") or {}).get("scaling") or {}).get("pollingInterval", 2)
    try:
        seconds = float(interval)
    except (TypeError, ValueError):
        seconds = 2.0
    last = memo.get("last_pass")
    # Half a tick of slack, so an interval equal to the tick runs on every tick.
    return last is None or now - float(last) >= seconds - TICK_SECONDS / 2


def _policy_state(memo: kopf.Memo, body: kopf.Body) -> policy.PolicyState:
    state = memo.get("policy_state")
    if isinstance(state, policy.PolicyState):
        return state
    return policy.PolicyState.from_dict((body.get("status") or {}).get("policy"))


async def _observe(
    ctx: OperatorContext, jobqueue: spec.JobQueue, labels: tuple[str, str, str]
) -> tuple[QueueObservation | None, Degradation | None]:
    """Probe the queue; on failure ``None`` and why (the policy's fallback then applies)."""
    try:
        url = await ctx.secret_urls.redis_url(ctx.api(), jobqueue)
    except secrets.SecretProblem as problem:
        ctx.metrics.probe_errors.labels(*labels).inc()
        return None, (problem.reason, problem.message)
    try:
        return await ctx.prober.probe(url, jobqueue.queue_name), None
    except ProbeError as error:
        ctx.metrics.probe_errors.labels(*labels).inc()
        ctx.secret_urls.forget(jobqueue)  # the Secret may have been fixed since it was read
        return None, ("ProbeFailed", str(error))


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
    ctx: OperatorContext, jobqueue: spec.JobQueue, result: control.PassResult, labels: tuple[str, str, str]
) -> None:
    m = ctx.metrics
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


async def _target(
    ctx: OperatorContext, jobqueue: spec.JobQueue
) -> tuple[KubeActuator | None, Degradation | None]:
    """The actuator of the worker Deployment, or why there is none to scale."""
    namespace = jobqueue.metadata.namespace or "default"
    name = builders.worker_deployment_name(jobqueue)
    deployment = await ctx.api().get_deployment(namespace, name)
    if deployment is None:
        if jobqueue.spec.workers.deployment_ref is None:
            raise kopf.TemporaryError(f"Deployment {name} does not exist yet", delay=RETRY_SECONDS)
        return None, (
            "DeploymentNotFound",
            f"spec.workers.deploymentRef: Deployment {namespace}/{name} not found",
        )
    actuator = KubeActuator(ctx.api(), namespace, deployment)
    hpa = await actuator.conflicting_hpa()
    if hpa is not None:
        message = f"HorizontalPodAutoscaler {hpa} also scales Deployment {name}; not scaling while it exists"
        return actuator, ("ConflictingHPA", message)
    return actuator, None


async def poll_once(
    ctx: OperatorContext, body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, now: float
) -> None:
    """Probe -> policy -> actuator, then status, conditions, Events and metrics."""
    paused = builders.paused_condition(body)
    try:
        jobqueue = spec.parse_jobqueue(body)
    except spec.SpecError as error:
        write_status(body, patch, {}, [*builders.spec_invalid_conditions(error), paused], now)
        return
    labels = (jobqueue.metadata.namespace or "default", jobqueue.metadata.name, jobqueue.queue_name)
    actuator, blocked = await _target(ctx, jobqueue)
    if actuator is None:
        write_status(
            body, patch, {}, [builders.condition(ConditionType.DEGRADED, True, *blocked or ("", ""))], now
        )
        return
    observation, probe_problem = await _observe(ctx, jobqueue, labels)
    is_paused = paused.status == ConditionStatus.TRUE or blocked is not None
    state = _policy_state(memo, body)
    result = await control.control_pass(jobqueue, observation, actuator, state, now, paused=is_paused)
    memo["policy_state"] = result.decision.state
    record_metrics(ctx, jobqueue, result, labels)
    if result.scaled:
        word = "ScaledUp" if result.decision.desired > result.current else "ScaledDown"
        message = f"{result.current} -> {result.decision.desired}: {result.decision.reason}"
        kopf.info(body, reason=word, message=message)
    fields = builders.pass_status(result, jobqueue.metadata.generation, now)
    conditions = [*builders.pass_conditions(result, blocked or probe_problem), paused]
    _checkpoint_policy(memo, body, fields, result.decision.state, now)
    write_status(body, patch, fields, conditions, now)


def _checkpoint_policy(
    memo: kopf.Memo, body: kopf.Body, fields: dict[str, Any], state: policy.PolicyState, now: float
) -> None:
    """Add status.policy when other fields change, or every POLICY_CHECKPOINT_SECONDS."""
    old = dict(body.get("status") or {})
    changed = bool(builders.status_patch(old, fields)) or "policy" not in old
    written = memo.get("policy_written_at")
    if changed or written is None or now - float(written) >= POLICY_CHECKPOINT_SECONDS:
        fields["policy"] = state.to_dict()
        memo["policy_written_at"] = now


# ---------------------------------------------------------------------------- registration


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the operator's handlers into ``registry`` (call once per registry)."""

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_settings(settings)
        metrics = memo.get("metrics")
        if not isinstance(metrics, OperatorMetrics):
            metrics = OperatorMetrics(CollectorRegistry())
        ctx = OperatorContext(metrics=metrics)
        try:
            ctx.connection = kube_api.connection_from_memo(memo)
        except kopf.TemporaryError:
            ctx.connection = None  # set by the login handler
        memo[CONTEXT_KEY] = ctx

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx = memo.get(CONTEXT_KEY)
        if isinstance(ctx, OperatorContext):
            await ctx.close()

    @kopf.on.resume(
        spec.GROUP, spec.VERSION, spec.PLURAL, registry=registry, id="workers", backoff=RETRY_SECONDS
    )
    @kopf.on.create(
        spec.GROUP, spec.VERSION, spec.PLURAL, registry=registry, id="workers", backoff=RETRY_SECONDS
    )
    @kopf.on.update(
        spec.GROUP,
        spec.VERSION,
        spec.PLURAL,
        registry=registry,
        id="workers",
        field="spec",
        backoff=RETRY_SECONDS,
    )
    async def workers(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        await ensure_workers(context_of(memo), body, patch)

    @kopf.timer(
        spec.GROUP,
        spec.VERSION,
        spec.PLURAL,
        registry=registry,
        id="poll",
        interval=TICK_SECONDS,
        backoff=RETRY_SECONDS,
    )
    async def poll(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
        ctx = context_of(memo)
        now = time.time()
        if not _due(memo, body, now):
            return
        started = time.perf_counter()
        try:
            await poll_once(ctx, body, memo, patch, now)
            # Only a pass that got through counts: a failed one is retried after RETRY_SECONDS,
            # not after a whole pollingInterval.
            memo["last_pass"] = now
        finally:
            ctx.metrics.decision_duration.observe(time.perf_counter() - started)


def login_and_remember(memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """A login handler for the CLI: in-cluster service account, else ``$KUBECONFIG`` (read at call time);
    the credentials are also given to the handlers' API client."""
    info = kopf.login_with_service_account(logger=logger, **kwargs) or kopf.login_with_kubeconfig(
        logger=logger, **kwargs
    )
    ctx = memo.get(CONTEXT_KEY)
    if info is not None and isinstance(ctx, OperatorContext):
        ctx.login(info)
    return info
