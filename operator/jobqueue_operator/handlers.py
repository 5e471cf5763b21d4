"""kopf handlers of the JobQueue operator, registered by ``register(registry)`` (never at import).

* ``startup``/``cleanup``: the shared context (API client, metrics) and the one ``ControlLoop``
  that runs every JobQueue's passes (``control_loop``), started and stopped with the operator.
* ``fleet`` (every watch event, the initial listing included): keep the loop's ``Fleet`` member
  of the object up to date (spec, pause annotation, status).
* ``release`` (deletion): drop the member and its metric series; kopf then removes the finalizer.
* ``workers`` (create/resume/spec update): parse the spec, create or update the owned Deployment.

Handlers are thin: builders are pure (``builders``), I/O lives in ``kube_api``, ``kube_actuator``,
``prober`` and ``secrets``, the decision in ``policy``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from prometheus_client import CollectorRegistry

from jobqueue_operator import builders, control_loop, fleet, kube_api, spec
from jobqueue_operator.metrics import OperatorMetrics

FINALIZER: Final = "jobqueue.dev/finalizer"
STORAGE_PREFIX: Final = "jobqueue.dev"
# Retry delay of the workers handler after an API error, and before the operator is logged in.
RETRY_SECONDS: Final = 1.0
CONTEXT_KEY: Final = "jobqueue"


@dataclass
class OperatorContext:
    """What the handlers and the control loop share: the API connection, the fleet and the metrics."""

    metrics: OperatorMetrics
    fleet: fleet.Fleet = field(default_factory=fleet.Fleet)
    connection: kopf.ConnectionInfo | None = None
    loop: control_loop.ControlLoop | None = None
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

    def start(self) -> None:
        """Start the control loop in the running event loop."""
        self.loop = control_loop.ControlLoop(self.fleet, self.metrics, self.api)
        self.loop.start()

    async def close(self) -> None:
        if self.loop is not None:
            await self.loop.stop()
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


# ---------------------------------------------------------------------------- the worker Deployment


async def ensure_workers(ctx: OperatorContext, body: kopf.Body) -> None:
    """Create the owned Deployment, or bring its template up to date; replicas stay the control
    loop's. An invalid spec is left alone here: the control loop reports it (SpecValid=False)."""
    try:
        jobqueue = spec.parse_jobqueue(body)
        if jobqueue.spec.workers.deployment_ref is not None:
            return
        wanted = builders.worker_deployment(jobqueue)
    except spec.SpecError:
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


def forget(ctx: OperatorContext, key: fleet.Key) -> None:
    """Stop the passes of a JobQueue that is being deleted, and drop its metric series."""
    member = ctx.fleet.forget(key)
    if member is not None and member.jobqueue is not None:
        ctx.metrics.forget(member.namespace, member.name, member.jobqueue.queue_name)


# ---------------------------------------------------------------------------- registration


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the operator's handlers into ``registry`` (call once per registry)."""
    resource = (spec.GROUP, spec.VERSION, spec.PLURAL)

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
        ctx.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx = memo.get(CONTEXT_KEY)
        if isinstance(ctx, OperatorContext):
            await ctx.close()

    @kopf.on.event(*resource, registry=registry, id="fleet")
    async def track(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        ctx = context_of(memo)
        if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
            forget(ctx, fleet.key_of(body))
        else:
            ctx.fleet.observe(body)

    @kopf.on.delete(*resource, registry=registry, id="release")
    async def release(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        forget(context_of(memo), fleet.key_of(body))

    @kopf.on.resume(*resource, registry=registry, id="workers", backoff=RETRY_SECONDS)
    @kopf.on.create(*resource, registry=registry, id="workers", backoff=RETRY_SECONDS)
    @kopf.on.update(*resource, registry=registry, id="workers", field="spec", backoff=RETRY_SECONDS)
    async def workers(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await ensure_workers(context_of(memo), body)


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
