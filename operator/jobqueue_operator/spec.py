"""The ``JobQueue`` custom resource: pydantic models of its spec, the single source of the CRD.

``crdgen`` turns these models into ``crds/jobqueues.jobqueue.dev.yaml``; ``parse_jobqueue`` validates
an object read from the API server, including the cross-field rules a schema cannot express:

| rule                                                  | reported at                            |
| ----------------------------------------------------- | -------------------------------------- |
| ``minReplicas <= maxReplicas``                         | ``spec.scaling.minReplicas``           |
| exactly one of ``template`` / ``deploymentRef``       | ``spec.workers``                       |
| at least one scaling target                           | ``spec.scaling.targets``               |
| ``fallback.replicas`` within ``[minReplicas, max]``   | ``spec.scaling.fallback.replicas``     |
| queue name rules of ``worker_runtime.keys``, also for | ``spec.queue.name``                    |
| ``metadata.name`` when it is the queue name           |                                        |
| a pod template the operator can build on              | ``spec.workers.template...``           |

Parsing is strict (pydantic strict mode): ``"5"`` is no integer and ``"yes"`` or ``1`` no boolean,
as the API server's schema has it, so dev mode (no API server in front) refuses what a cluster
would, and no string ever counts as ``paused: true``. Upper bounds (``MAX_*``) keep a typo from
asking for thousands of pods or a day between probes; docs/jobqueue-resource.md lists them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from jobqueue_operator import flow_spec, pod_template, redis_spec, spec_base
from jobqueue_operator.spec_base import KubeModel
from worker_runtime import keys, retention, settings

GROUP: Final = "jobqueue.dev"
VERSION: Final = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND: Final = "JobQueue"
PLURAL = "jobqueues"
SINGULAR = "jobqueue"
SHORT_NAMES = ("jq",)
CRD_NAME = f"{PLURAL}.{GROUP}"
# Who writes: the managed-by label of owned objects and the component of the operator's Events.
OPERATOR_NAME: Final = "jobqueue-operator"

PAUSED_ANNOTATION = f"{GROUP}/paused"
# Seconds added to jobs.timeoutSeconds for the derived terminationGracePeriodSeconds: time for the
# worker to notice SIGTERM, hand back what cannot finish and flush its last metrics.
GRACE_MARGIN_SECONDS = 30
# The same characters worker_runtime.keys.validate_queue_name refuses, as a schema pattern.
QUEUE_NAME_PATTERN = r"^[^{}: \t\r\n]+$"
# The longest queue name worker_runtime.keys.validate_queue_name accepts.
MAX_QUEUE_NAME = 200
# Upper bounds: far above any sensible value, low enough that a typo cannot do much harm.
MAX_REPLICAS = 10_000
MAX_POLLING_INTERVAL = 600
MAX_SECONDS = 86_400  # a day: job timeouts, windows, cooldowns, backoff caps
MAX_TARGET = 1_000_000

_ENV_PREFIX = str(settings.WorkerSettings.model_config.get("env_prefix", "JOBQUEUE_"))


def _worker_default(field: str) -> Any:
    """The runtime's default of a ``WorkerSettings`` field. The spec's defaults for what it hands to
    the workers are these values, so a pod whose JobQueue sets nothing runs as a worker started
    with no environment does, and the two cannot drift."""
    return settings.WorkerSettings.model_fields[field].default


def _whole(value: float) -> int:
    """A runtime default (a float there) for an integer field of the CRD; refuses to round."""
    if value != int(value):
        raise ValueError(f"{value} has no integer form for the CRD")
    return int(value)


class SpecError(ValueError):
    """A JobQueue the operator refuses; ``path`` is the Kubernetes field path, ``reason`` why."""

    def __init__(self, path: str, reason: str, *, more: tuple[tuple[str, str], ...] = ()) -> None:
        self.path = path
        self.reason = reason
        self.errors: tuple[tuple[str, str], ...] = ((path, reason), *more)
        super().__init__("; ".join(f"{p}: {r}" for p, r in self.errors))


# ``spec.queue.redis`` lives in a module of its own.
SecretKeyRef = spec_base.SecretKeyRef
_section = spec_base.section
TlsSpec = redis_spec.TlsSpec
RedisSpec = redis_spec.RedisSpec


class QueueSpec(KubeModel):
    """The Redis queue this JobQueue scales workers for."""

    name: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_QUEUE_NAME,
        pattern=QUEUE_NAME_PATTERN,
        description="Queue name in Redis; absent means metadata.name, which must then be at most 200 "
        "characters. No braces, colons or whitespace, since the name is the key's cluster hash tag.",
    )
    redis: RedisSpec = Field(description="Connection to the Redis server holding the queue.")

    @field_validator("name")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is not None:
            keys.validate_queue_name(value)
        return value


class DeploymentRef(KubeModel):
    """An existing Deployment, in the same namespace, whose replicas the operator sets."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Deployment.")


class WorkersSpec(KubeModel):
    """The worker pods: an operator-managed pod template, or a Deployment you manage yourself."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.template) != has(self.deploymentRef)",
                    "message": "set exactly one of template and deploymentRef",
                }
            ]
        }
    )

    template: dict[str, Any] | None = Field(
        None,
        description="Pod template (a core/v1 PodTemplateSpec) of a Deployment the operator creates and owns; "
        "the operator adds the JOBQUEUE_* environment. Exactly one of template and deploymentRef.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    deployment_ref: DeploymentRef | None = Field(
        None,
        description="An existing Deployment to scale instead of a template; its pods read JOBQUEUE_* "
        "themselves. Exactly one of template and deploymentRef.",
    )
    concurrency: int = Field(
        _worker_default("concurrency"),
        ge=1,
        le=10_000,
        description="Jobs one pod runs at once; 10 suits I/O-bound handlers.",
    )
    metrics_port: int = Field(
        _worker_default("metrics_port"),
        ge=1,
        le=65535,
        description="Port of the workers' /metrics and /healthz; 9100 is the runtime's.",
    )
    termination_grace_period_seconds: int | None = Field(
        None,
        ge=0,
        le=MAX_SECONDS + GRACE_MARGIN_SECONDS,
        description="Seconds a stopping pod may drain. Absent means jobs.timeoutSeconds + 30, so a job "
        "started just before SIGTERM can still finish.",
    )


class ScalingTargets(KubeModel):
    """What the fleet is sized for; with several, the largest recommendation wins."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    backlog_per_replica: int | None = Field(
        None,
        ge=1,
        le=MAX_TARGET,
        description="Jobs (waiting + running) per replica, as KEDA's Redis scalers offer.",
    )
    max_oldest_age: int | None = Field(
        None,
        ge=1,
        le=MAX_SECONDS,
        description="Seconds the oldest ready job may wait; sized from measured arrival and service rates.",
    )


class ActivationSpec(KubeModel):
    """When a fleet at zero replicas wakes up."""

    waiting: int = Field(
        1, ge=1, le=MAX_TARGET, description="Ready jobs that wake a fleet at zero; 1 means any job."
    )


class ScaleUpSpec(KubeModel):
    """How fast the fleet grows: each period it may add the larger of the two steps (as the HPA does)."""

    max_step_per_period: int = Field(
        4, ge=1, le=MAX_REPLICAS, description="Pods added per period at most; 4 is the HPA's default."
    )
    max_step_percent: int = Field(
        100,
        ge=1,
        le=1000,
        description="Percent of the fleet added per period at most; 100 (doubling) is the HPA's.",
    )
    period_seconds: int = Field(15, ge=1, le=1800, description="Length of one period in seconds.")


class ScaleDownSpec(KubeModel):
    """How carefully the fleet shrinks: stabilized, hysteretic and step-limited."""

    stabilization_window_seconds: int = Field(
        60,
        ge=0,
        le=3600,
        description="Seconds of recommendations whose highest one bounds a scale-down; "
        "60 rides out gaps between bursts without paying for idle pods long.",
    )
    tolerance: float = Field(
        0.35,
        ge=0,
        le=0.9,
        description="Fraction of spare capacity the smaller fleet must keep at the window's peak need before "
        "the fleet shrinks; 0.35 absorbs load noise of +/-20% without flapping.",
    )
    max_step_per_period: int | None = Field(
        None,
        ge=1,
        le=MAX_REPLICAS,
        description="Pods removed per period at most; absent means no limit beyond the window.",
    )
    period_seconds: int = Field(15, ge=1, le=1800, description="Length of one period in seconds.")


class FallbackSpec(KubeModel):
    """What to do while the queue cannot be probed."""

    failure_threshold: int = Field(
        3,
        ge=1,
        le=1000,
        description="Consecutive failed probes before falling back; 3 ignores a single blip.",
    )
    replicas: int | None = Field(
        None, ge=0, le=MAX_REPLICAS, description="Replicas while probes fail; absent keeps the current count."
    )


class ScalingSpec(KubeModel):
    """Sizing of the worker fleet."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                },
                {
                    "rule": "!has(self.fallback) || !has(self.fallback.replicas) || "
                    "(self.fallback.replicas >= self.minReplicas "
                    "&& self.fallback.replicas <= self.maxReplicas)",
                    "message": "fallback.replicas must be within [minReplicas, maxReplicas]",
                },
            ]
        }
    )

    min_replicas: int = Field(
        0, ge=0, le=MAX_REPLICAS, description="Fewest replicas; 0 lets an idle queue cost nothing."
    )
    max_replicas: int = Field(
        10,
        ge=1,
        le=MAX_REPLICAS,
        description="Most replicas; bounds cost and Redis connections. At most 10000.",
    )
    polling_interval: int = Field(
        2,
        ge=1,
        le=MAX_POLLING_INTERVAL,
        description="Seconds between probes; 2 starts a fleet at zero within seconds. At most 600.",
    )
    targets: ScalingTargets = Field(description="At least one target: backlogPerReplica, maxOldestAge.")
    activation: ActivationSpec = _section(ActivationSpec, "Waking up from zero replicas.")
    scale_up: ScaleUpSpec = _section(ScaleUpSpec, "Scale-up step limits.")
    scale_down: ScaleDownSpec = _section(ScaleDownSpec, "Scale-down window, tolerance and step limit.")
    cooldown_seconds: int = Field(
        120,
        ge=0,
        le=MAX_SECONDS,
        description="Seconds the queue must be idle before the last replica goes; 120 keeps a "
        "warm pod between bursts a minute or two apart.",
    )
    fallback: FallbackSpec = _section(FallbackSpec, "Behaviour while the queue cannot be probed.")
    paused: bool = Field(
        False, description='Leave replicas alone. The annotation jobqueue.dev/paused: "true" pauses too.'
    )


class BackoffSpec(KubeModel):
    """Delay between attempts: exponential from baseSeconds, with jitter, capped at capSeconds."""

    base_seconds: float = Field(
        _worker_default("backoff_base_seconds"),
        ge=0,
        le=MAX_SECONDS,
        description="Seconds before the first retry; doubled each retry.",
    )
    cap_seconds: float = Field(
        _worker_default("backoff_cap_seconds"),
        ge=0,
        le=MAX_SECONDS,
        description="Longest delay in seconds, so retries never stall for hours.",
    )


class CompletedRetentionSpec(KubeModel):
    """Completed jobs kept for lookup: the newest ``count``, none older than ``ageSeconds``."""

    count: int = Field(
        _worker_default("keep_completed"),
        ge=0,
        le=retention.MAX_KEEP_COUNT,
        description="The newest completed jobs kept; older ones are deleted as new ones finish.",
    )
    age_seconds: int = Field(
        _whole(_worker_default("keep_completed_seconds")),
        ge=0,
        le=retention.MAX_KEEP_SECONDS,
        description="Seconds a completed job is kept for lookup (a day by default).",
    )


class DeadRetentionSpec(KubeModel):
    """Dead-lettered jobs kept: the newest ``count``, none older than ``ageSeconds``."""

    count: int = Field(
        _worker_default("keep_dead"),
        ge=0,
        le=retention.MAX_KEEP_COUNT,
        description="The newest dead jobs kept; older ones are deleted as new ones die.",
    )
    age_seconds: int = Field(
        _whole(_worker_default("keep_dead_seconds")),
        ge=0,
        le=retention.MAX_KEEP_SECONDS,
        description="Seconds a dead job is kept for inspection and replay (a week by default).",
    )


class RetentionSpec(KubeModel):
    """How many finished jobs Redis keeps, by count and by age (both always apply)."""

    completed: CompletedRetentionSpec = _section(CompletedRetentionSpec, "Completed jobs.")
    dead: DeadRetentionSpec = _section(DeadRetentionSpec, "Dead-lettered jobs.")


class JobsSpec(KubeModel):
    """Defaults for jobs enqueued without their own options, handed to the workers as JOBQUEUE_*."""

    attempts: int = Field(
        _worker_default("default_attempts"),
        ge=1,
        le=1000,
        description="Attempts per job, the first included; 3 rides out a blip.",
    )
    backoff: BackoffSpec = _section(BackoffSpec, "Retry delays.")
    timeout_seconds: int = Field(
        _whole(_worker_default("default_timeout_seconds")),
        ge=1,
        le=MAX_SECONDS,
        description="Seconds a job may run before it counts as a failed attempt; at most a day.",
    )
    retention: RetentionSpec = _section(RetentionSpec, "Finished jobs kept in Redis.")


class JobQueueSpec(KubeModel):
    """A Redis job queue and the autoscaled fleet of workers serving it."""

    queue: QueueSpec = Field(description="The queue and its Redis connection.")
    workers: WorkersSpec = Field(description="The worker pods.")
    scaling: ScalingSpec = Field(description="How many worker pods, and how fast that changes.")
    jobs: JobsSpec = _section(JobsSpec, "Job defaults handed to the workers.")
    flow: flow_spec.FlowSpec = _section(
        flow_spec.FlowSpec, "Flow control of the claims: pause, rate limit, running cap (flow_spec)."
    )


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class JobQueue(BaseModel):
    """A whole JobQueue object (status aside: see ``status.JobQueueStatus``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    api_version: Literal["jobqueue.dev/v1alpha1"] = "jobqueue.dev/v1alpha1"
    kind: Literal["JobQueue"] = KIND
    metadata: ObjectMeta
    spec: JobQueueSpec

    @property
    def queue_name(self) -> str:
        """The Redis queue name: spec.queue.name, else metadata.name."""
        return self.spec.queue.name or self.metadata.name

    @property
    def termination_grace_period_seconds(self) -> int:
        """The workers' drain budget: the spec's value, else the job timeout plus a margin."""
        explicit = self.spec.workers.termination_grace_period_seconds
        if explicit is not None:
            return explicit
        return grace_period_for(self.spec.jobs.timeout_seconds)

    def worker_env(self) -> dict[str, str]:
        """The JOBQUEUE_* variables (worker_runtime.settings) that carry this spec to the workers.

        The Redis URL is not among them: it comes from the Secret via ``valueFrom``.
        """
        spec = self.spec
        values: dict[str, object] = {
            "queue": self.queue_name,
            "concurrency": spec.workers.concurrency,
            "metrics_port": spec.workers.metrics_port,
            "default_attempts": spec.jobs.attempts,
            "backoff_base_seconds": spec.jobs.backoff.base_seconds,
            "backoff_cap_seconds": spec.jobs.backoff.cap_seconds,
            "default_timeout_seconds": spec.jobs.timeout_seconds,
            "grace_period_seconds": max(0, self.termination_grace_period_seconds - 5),
            "keep_completed": spec.jobs.retention.completed.count,
            "keep_completed_seconds": spec.jobs.retention.completed.age_seconds,
            "keep_dead": spec.jobs.retention.dead.count,
            "keep_dead_seconds": spec.jobs.retention.dead.age_seconds,
        }
        return {env_name(field): str(value) for field, value in values.items()}


def env_name(field: str) -> str:
    """The environment variable of one ``WorkerSettings`` field, e.g. ``JOBQUEUE_CONCURRENCY``."""
    if field not in settings.WorkerSettings.model_fields:
        raise KeyError(f"WorkerSettings has no field {field!r}")
    return f"{_ENV_PREFIX}{field}".upper()


def parse_jobqueue(body: Mapping[str, Any]) -> JobQueue:
    """Validate a JobQueue object; raise ``SpecError`` naming the field path and the reason."""
    data = {key: value for key, value in body.items() if key in ("apiVersion", "kind", "metadata", "spec")}
    try:
        jobqueue = JobQueue.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    problems = cross_field_problems(jobqueue.spec)
    if jobqueue.spec.queue.name is None:
        problems += _queue_name_problems(jobqueue.metadata.name)
    if jobqueue.spec.workers.template is not None:
        problems += pod_template.problems(jobqueue.spec.workers.template)
    if problems:
        (path, reason), *more = problems
        raise SpecError(path, reason, more=tuple(more))
    return jobqueue


def cross_field_problems(spec: JobQueueSpec) -> list[tuple[str, str]]:
    """The rules between fields that an OpenAPI schema cannot state, as ``(path, reason)`` pairs."""
    problems: list[tuple[str, str]] = []
    scaling = spec.scaling
    if scaling.min_replicas > scaling.max_replicas:
        problems.append(
            (
                "spec.scaling.minReplicas",
                f"must not exceed maxReplicas ({scaling.min_replicas} > {scaling.max_replicas})",
            )
        )
    if (spec.workers.template is None) == (spec.workers.deployment_ref is None):
        problems.append(("spec.workers", "set exactly one of template and deploymentRef"))
    targets = scaling.targets
    if targets.backlog_per_replica is None and targets.max_oldest_age is None:
        problems.append(("spec.scaling.targets", "set at least one of backlogPerReplica and maxOldestAge"))
    fallback = scaling.fallback.replicas
    if fallback is not None and not scaling.min_replicas <= fallback <= scaling.max_replicas:
        problems.append(
            (
                "spec.scaling.fallback.replicas",
                f"must be within [minReplicas, maxReplicas] = "
                f"[{scaling.min_replicas}, {scaling.max_replicas}]",
            )
        )
    return problems


def _queue_name_problems(name: str) -> list[tuple[str, str]]:
    """metadata.name as the queue name: Kubernetes allows 253 characters, a queue name 200."""
    try:
        keys.validate_queue_name(name)
    except ValueError as exc:
        return [("spec.queue.name", f"absent, so metadata.name is the queue name, and it is invalid: {exc}")]
    return []


class PausedBy(StrEnum):
    """What pauses a JobQueue's scaling."""

    ANNOTATION = "annotation"
    SPEC = "spec"


def paused_by(jobqueue: JobQueue | Mapping[str, Any]) -> PausedBy | None:
    """What pauses scaling, if anything: the annotation ``jobqueue.dev/paused: "true"`` (any case,
    spaces around ignored), else ``spec.scaling.paused: true``. The one place this is decided: the
    operator's loop, dev mode's loop and the Paused condition all ask here.

    Takes a parsed JobQueue or the raw object; on the raw one a pause works even while the rest of
    the spec is invalid.
    """
    if isinstance(jobqueue, JobQueue):
        annotations: Mapping[str, Any] = jobqueue.metadata.annotations
        in_spec: object = jobqueue.spec.scaling.paused
    else:  # any shape at all: a malformed object must not break the caller
        metadata, body_spec = _mapping(jobqueue.get("metadata")), _mapping(jobqueue.get("spec"))
        annotations = _mapping(metadata.get("annotations"))
        in_spec = _mapping(body_spec.get("scaling")).get("paused")
    if str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true":
        return PausedBy.ANNOTATION
    return PausedBy.SPEC if in_spec is True else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def grace_period_for(timeout_seconds: float) -> int:
    """terminationGracePeriodSeconds derived from a job timeout."""
    return math.ceil(timeout_seconds) + GRACE_MARGIN_SECONDS


def _spec_error(exc: ValidationError) -> SpecError:
    found = [(_field_path(err["loc"]), _reason(err)) for err in exc.errors()]
    (path, reason), *more = found
    return SpecError(path, reason, more=tuple(more))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "<root>"


def _reason(err: Any) -> str:
    message = str(err["msg"])
    return message.removeprefix("Value error, ")
