"""The operator's tunables: one pydantic model, grouped by concern, each field with its unit and why.

Modelled on kopf's ``OperatorSettings``: the startup handler builds one ``Tunables`` (the one an
embedder or a test put in ``memo["tunables"]``, else the defaults), applies the kopf-facing part to
kopf's own settings (``apply_to_kopf``) and hands each section to what it tunes: ``loop`` to the
control loop and the served JobQueues, ``api`` to the Kubernetes client, ``probe`` to the prober,
``secrets`` to the Redis URL cache, ``kopf`` to the handlers, ``leader_election`` to the Lease
elector (``leader_election``). Nothing reads a module-level constant.

What a JobQueue's spec sets (pollingInterval, windows, ...) is not here: this is what the operator
process itself needs, the same for every JobQueue it serves.
"""

from __future__ import annotations

import kopf
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoopTunables(_Section):
    """The control loop: how often it looks, how much it does at once."""

    tick_seconds: float = Field(
        1.0,
        gt=0,
        description="Seconds between ticks. A JobQueue's pass runs on the first tick at least its "
        "pollingInterval after its last pass that got through (half a tick of slack), so a failed "
        "pass is retried one tick later; 1 s keeps the smallest pollingInterval (1 s) exact.",
    )
    pass_concurrency: int = Field(
        32,
        ge=1,
        description="Passes acting and writing at once: enough to keep the API client's connections "
        "busy, few enough that a tick over thousands of JobQueues does not hold thousands of coroutines.",
    )
    policy_checkpoint_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds after which status.policy is rewritten even when nothing else changed: "
        "a restart loses at most this much of the policy's memory, and an idle JobQueue costs one "
        "status PATCH per 30 s instead of one per pass.",
    )
    workers_not_ready_seconds: float = Field(
        300.0,
        ge=0,
        description="Seconds the worker Deployment may have fewer ready replicas than it was asked "
        "for before Ready turns False (reason WorkersNotReady) with a Warning Event. 300 s covers "
        "pulling a large image onto a node the cluster autoscaler has just added; a Deployment "
        "that reports a failure itself (ProgressDeadlineExceeded, ReplicaFailure) is reported at once.",
    )


class ApiTunables(_Section):
    """The operator's own Kubernetes API client (kopf's watches have their own)."""

    timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds one API call may take in all; a slower call fails the pass, which the "
        "next tick retries. 10 s is far above a healthy API server's latency.",
    )
    connections: int = Field(
        20,
        ge=1,
        description="Connections kept open to the API server (aiohttp's pool limit); 20 serves "
        "pass_concurrency passes without queueing behind one another for long.",
    )


class ProbeTunables(_Section):
    """The Redis probe: one pipelined round trip for all due queues of a Redis URL."""

    attempts: int = Field(
        3,
        ge=1,
        description="Round trips tried before the queues count as unprobed (the policy's fallback then "
        "counts a failure); 3 rides out a reconnect without holding up the tick.",
    )
    backoff_seconds: float = Field(
        0.1, ge=0, description="Seconds before the second attempt; doubled for each next one."
    )
    max_backoff_seconds: float = Field(
        1.0,
        ge=0,
        description="Longest wait between attempts, in seconds, so a probe fails within a tick or two.",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds one round trip may take, over thousands of queues; a hung one delays "
        "every JobQueue sharing the URL, so it is bounded.",
    )
    connect_timeout_seconds: float = Field(
        2.0, gt=0, description="Seconds to open a connection; an unreachable Redis fails fast."
    )
    socket_timeout_seconds: float = Field(
        5.0, gt=0, description="Seconds one read or write on the connection may block."
    )


class SecretTunables(_Section):
    """Reading the Redis URL from the Secret a JobQueue names."""

    url_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds a URL read successfully is reused: most JobQueues share one Secret, and "
        "reading it on every pass would be most of the operator's API traffic. A rotated URL is "
        "picked up within this time; a missing Secret or key is never cached, and a URL whose probe "
        "failed is forgotten at once.",
    )


class KopfTunables(_Section):
    """What kopf does on the operator's behalf: retries of handlers, API errors, watches."""

    retry_seconds: float = Field(
        1.0,
        gt=0,
        description="Seconds before the track handler runs again while the operator has not "
        "started up or logged in yet; short, so the first watch events are taken in at once.",
    )
    default_backoff_seconds: float = Field(
        5.0,
        gt=0,
        description="Seconds before kopf retries any other failed handler (kopf's default is 60).",
    )
    api_error_backoffs: tuple[float, ...] = Field(
        (1.0, 2.0, 5.0, 10.0, 20.0),
        min_length=1,
        description="Seconds between kopf's retries of a failed API request, in turn; bounded, so an "
        "API server restart is ridden out in well under a minute.",
    )
    watch_reconnect_seconds: float = Field(
        1.0, gt=0, description="Seconds before a broken watch stream is opened again."
    )


class LeaderElectionTunables(_Section):
    """One active operator among replicas: a coordination.k8s.io/v1 Lease, as client-go's
    leaderelection and controller-runtime use (their defaults: 15 s, 10 s, 2 s)."""

    enabled: bool = Field(
        False,
        description="Elect a leader through a Lease; only the leader probes and writes. Off by "
        "default: a single replica (the chart's default) needs no election.",
    )
    lease_name: str = Field(
        "jobqueue-operator",
        min_length=1,
        max_length=253,
        description="Name of the Lease the replicas share (the chart uses its release's full name, "
        "so two releases never share one).",
    )
    lease_namespace: str | None = Field(
        None,
        description="Namespace of the Lease; absent means $POD_NAMESPACE, else the service account's "
        "namespace, else default: the operator's own namespace, where its Role allows leases.",
    )
    identity: str | None = Field(
        None,
        description="This replica's holderIdentity; absent means $POD_NAME (else the host name) and "
        "a random suffix, so a restarted container never mistakes its predecessor's Lease for its own.",
    )
    lease_duration_seconds: float = Field(
        15.0,
        gt=0,
        description="Seconds a standby waits, after it last saw the Lease renewed, before taking it "
        "over: the failover time after a crash is at most this plus retry_period_seconds.",
    )
    renew_deadline_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds the leader keeps acting without a successful renewal; then it stops at "
        "once, lease_duration - renew_deadline (5 s) before any standby may take over.",
    )
    retry_period_seconds: float = Field(
        2.0,
        gt=0,
        description="Seconds between the leader's renewals and between a standby's looks at the Lease.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> LeaderElectionTunables:
        if not self.lease_duration_seconds > self.renew_deadline_seconds > self.retry_period_seconds:
            raise ValueError(
                "need lease_duration_seconds > renew_deadline_seconds > retry_period_seconds "
                f"(got {self.lease_duration_seconds:g} > {self.renew_deadline_seconds:g} "
                f"> {self.retry_period_seconds:g})"
            )
        return self


class Tunables(_Section):
    """Every tunable of the operator process."""

    loop: LoopTunables = Field(default_factory=LoopTunables, description="The control loop.")
    api: ApiTunables = Field(default_factory=ApiTunables, description="The Kubernetes API client.")
    probe: ProbeTunables = Field(default_factory=ProbeTunables, description="The Redis probe.")
    secrets: SecretTunables = Field(default_factory=SecretTunables, description="The Redis URL cache.")
    kopf: KopfTunables = Field(default_factory=KopfTunables, description="kopf's retries.")
    leader_election: LeaderElectionTunables = Field(
        default_factory=LeaderElectionTunables, description="One active replica through a Lease."
    )


def apply_to_kopf(tunables: KopfTunables, settings: kopf.OperatorSettings) -> None:
    """Copy the kopf-facing tunables onto kopf's settings (in the startup handler)."""
    settings.execution.default_backoff = tunables.default_backoff_seconds
    settings.networking.error_backoffs = list(tunables.api_error_backoffs)
    settings.watching.reconnect_backoff = tunables.watch_reconnect_seconds
