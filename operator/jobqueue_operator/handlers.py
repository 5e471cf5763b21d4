"""kopf handlers of the JobQueue operator, registered by ``register(registry)`` (never at import).

kopf only watches: its handlers persist nothing (no progress or diff-base annotation, no finalizer,
no Event), so a standby replica whose kopf runs like the leader's writes nothing. Everything that
writes is the control loop's, and the control loop acts only while this replica leads.

* ``startup``/``cleanup``: the shared context (``tunables.Tunables`` from ``memo["tunables"]``
  or the defaults, API client, metrics), the ``LeaderElector`` when
  ``leader_election.enabled``, and the one ``ControlLoop`` that runs every JobQueue's passes;
  kopf's own settings too. At cleanup the loop stops before the Lease is released.
* ``track`` (every watch event, the initial listing included): keep the object's entry in the
  loop's ``ServedJobQueues`` up to date (spec, pause annotation, status); on deletion, drop the
  entry and its metric series.

Handlers are thin: builders are pure (``worker_deployment``, ``status``), I/O lives in ``kube_api``,
``deployment_sync``, ``kube_actuator``, ``prober`` and ``secrets``, the decision in ``policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kopf
from prometheus_client import CollectorRegistry

from jobqueue_operator import control_loop, kube_api, leader_election, served, spec, tunables
from jobqueue_operator.metrics import OperatorMetrics

STORAGE_PREFIX: Final = "jobqueue.dev"
# kopf removes its configured finalizer from any object that has it, since no handler needs one:
# a name nobody adds, so kopf writes nothing (the old jobqueue.dev/finalizer is the leader's to remove).
KOPF_FINALIZER: Final = f"{STORAGE_PREFIX}/kopf-unused"
CONTEXT_KEY: Final = "jobqueue"


@dataclass
class OperatorContext:
    """What the handlers and the control loop share: the tunables, the API connection, the served
    JobQueues, the metrics and, with leader election, the elector."""

    metrics: OperatorMetrics
    settings: tunables.Tunables = field(default_factory=tunables.Tunables)
    jobqueues: served.ServedJobQueues = field(default_factory=served.ServedJobQueues)
    connection: kopf.ConnectionInfo | None = None
    loop: control_loop.ControlLoop | None = None
    elector: leader_election.LeaderElector | None = None
    _api: kube_api.KubeApi | None = None

    def api(self) -> kube_api.KubeApi:
        if self._api is None:
            if self.connection is None:
                delay = self.settings.kopf.retry_seconds
                raise kopf.TemporaryError("not logged in to the API server yet", delay=delay)
            self._api = kube_api.KubeApi(self.connection, self.settings.api, may_write=self.may_write)
        return self._api

    def may_write(self) -> bool:
        """Whether this replica acts now: it holds the Lease, or there is no election."""
        return self.elector is None or self.elector.is_leader()

    def login(self, info: kopf.ConnectionInfo) -> None:
        """Use new credentials from the next call on (the old session is closed at cleanup)."""
        self.connection = info
        self._api = None

    def start(self) -> None:
        """Start the control loop (and the election) in the running event loop."""
        self.loop = control_loop.ControlLoop(
            self.jobqueues, self.metrics, self.api, self.settings, leading=self.may_write
        )
        if self.settings.leader_election.enabled:
            self.elector = leader_election.LeaderElector(
                self.api,
                self.settings.leader_election,
                on_started_leading=self.loop.started_leading,
                on_stopped_leading=self.loop.stopped_leading,
            )
            self.elector.start()
        self.loop.start()

    def forget(self, key: served.Key, *, gone: bool = False) -> None:
        """Stop serving a JobQueue being deleted (``gone``: deleted), and drop its metric series."""
        if gone:
            self.jobqueues.gone(key)
        else:
            self.jobqueues.forget(key)
        self.metrics.forget(*key)

    async def close(self) -> None:
        if self.loop is not None:
            await self.loop.stop()
        if self.elector is not None:
            await self.elector.stop()
        if self._api is not None:
            await self._api.close()


def context_of(memo: Mapping[str, Any]) -> OperatorContext:
    ctx = memo.get(CONTEXT_KEY)
    if not isinstance(ctx, OperatorContext):
        delay = tunables.KopfTunables().retry_seconds  # no context, so no tunables of its own yet
        raise kopf.TemporaryError("the operator has not started up yet", delay=delay)
    return ctx


def configure_settings(settings: kopf.OperatorSettings, tuned: tunables.KopfTunables) -> None:
    """kopf watches and writes nothing: our storage prefixes (never used, since no handler
    persists), a finalizer nobody adds, no Events of its own; quick but bounded retries (``tuned``).

    No finalizer is needed (forgetting a deleted JobQueue is done on its watch event, and the owned
    Deployment goes with its owner reference), so a JobQueue can be deleted while no operator runs.
    """
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = False
    settings.posting.reporting_component = spec.OPERATOR_NAME
    tunables.apply_to_kopf(tuned, settings)


# ---------------------------------------------------------------------------- registration


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the operator's handlers into ``registry`` (call once per registry)."""
    resource = (spec.GROUP, spec.VERSION, spec.PLURAL)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        tuned = memo.get("tunables")
        if not isinstance(tuned, tunables.Tunables):
            tuned = tunables.Tunables()
        configure_settings(settings, tuned.kopf)
        metrics = memo.get("metrics")
        if not isinstance(metrics, OperatorMetrics):
            metrics = OperatorMetrics(CollectorRegistry())
        ctx = OperatorContext(metrics=metrics, settings=tuned)
        ctx.connection = kube_api.connection_from_memo(memo)  # else set by the login handler
        memo[CONTEXT_KEY] = ctx
        ctx.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx = memo.get(CONTEXT_KEY)
        if isinstance(ctx, OperatorContext):
            await ctx.close()

    @kopf.on.event(*resource, registry=registry, id="track")
    async def track(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        ctx = context_of(memo)
        if type == "DELETED":
            ctx.forget(served.key_of(body), gone=True)
        elif body.get("metadata", {}).get("deletionTimestamp"):
            ctx.forget(served.key_of(body))
            ctx.jobqueues.observe(body)  # notes an old finalizer to remove, if it has one
        else:
            ctx.jobqueues.observe(body)


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
