"""Pure builders of what the operator writes: the worker Deployment, conditions and the status patch.

No I/O here: each function maps a parsed ``JobQueue`` (and what was observed) to plain dicts, so
they are unit-tested without Kubernetes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from jobqueue_operator import spec, status
from jobqueue_operator.control import PassResult
from jobqueue_operator.status import Condition, ConditionStatus, ConditionType

Body = dict[str, Any]

MANAGED_BY: Final = "jobqueue-operator"
JOBQUEUE_LABEL: Final = f"{spec.GROUP}/jobqueue"
COMPONENT: Final = "worker"
REDIS_URL_ENV: Final = "JOBQUEUE_REDIS_URL"
POD_NAME_ENV: Final = "JOBQUEUE_POD_NAME"
WORKER_CONTAINER: Final = "worker"
TMP_VOLUME: Final = "jobqueue-tmp"

# Applied to every container unless its template sets the key (the Pod Security "restricted" profile).
SECURE_CONTAINER_DEFAULTS: Final[Mapping[str, Any]] = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def worker_deployment_name(jobqueue: spec.JobQueue) -> str:
    """The Deployment whose replicas are set: the referenced one, else ``<jobqueue>-worker``."""
    ref = jobqueue.spec.workers.deployment_ref
    return ref.name if ref is not None else f"{jobqueue.metadata.name}-worker"


def selector_labels(jobqueue: spec.JobQueue) -> dict[str, str]:
    """The owned Deployment's selector (immutable once created)."""
    return {JOBQUEUE_LABEL: jobqueue.metadata.name, "app.kubernetes.io/component": COMPONENT}


def worker_labels(jobqueue: spec.JobQueue, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kubernetes' recommended labels, over the template's own (which may name the app)."""
    labels = {"app.kubernetes.io/name": "jobqueue-worker", **(extra or {})}
    return labels | {
        "app.kubernetes.io/instance": jobqueue.metadata.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(jobqueue),
    }


def owner_reference(jobqueue: spec.JobQueue) -> Body:
    """A controller reference to the JobQueue, so deleting it collects the Deployment."""
    if not jobqueue.metadata.uid:
        raise ValueError("the JobQueue has no metadata.uid yet")
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "name": jobqueue.metadata.name,
        "uid": jobqueue.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def worker_env(jobqueue: spec.JobQueue) -> list[Body]:
    """JOBQUEUE_* from the spec, the Redis URL from its Secret and the pod's own name."""
    ref = jobqueue.spec.queue.redis.url_secret_ref
    env: list[Body] = [{"name": name, "value": value} for name, value in jobqueue.worker_env().items()]
    env.append({"name": REDIS_URL_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env.append({"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return env


def _merge_env(own: Iterable[Body], ours: list[Body]) -> list[Body]:
    names = {item["name"] for item in ours}
    return [item for item in own if item.get("name") not in names] + ours


def _secure(container: Body) -> Body:
    context = dict(container.get("securityContext") or {})
    for key, value in SECURE_CONTAINER_DEFAULTS.items():
        context.setdefault(key, copy.deepcopy(value))
    container["securityContext"] = context
    return container


def _with_tmp(container: Body) -> Body:
    """A writable /tmp when the root filesystem is read-only (Python and many libraries need one)."""
    mounts = list(container.get("volumeMounts") or [])
    read_only = container["securityContext"].get("readOnlyRootFilesystem") is True
    if read_only and not any(m.get("mountPath") == "/tmp" for m in mounts):
        mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
        container["volumeMounts"] = mounts
    return container


def _worker_container(container: Body, jobqueue: spec.JobQueue) -> Body:
    container["env"] = _merge_env(container.get("env") or [], worker_env(jobqueue))
    port = jobqueue.spec.workers.metrics_port
    ports = list(container.get("ports") or [])
    if not any(p.get("containerPort") == port or p.get("name") == "metrics" for p in ports):
        ports.append({"name": "metrics", "containerPort": port, "protocol": "TCP"})
    container["ports"] = ports
    return container


def pod_template(jobqueue: spec.JobQueue) -> Body:
    """The pod template of the owned Deployment: the spec's template plus labels, env and defaults."""
    template = copy.deepcopy(jobqueue.spec.workers.template or {})
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = worker_labels(jobqueue, metadata.get("labels"))
    pod = template.setdefault("spec", {})
    containers = [dict(c) for c in pod.get("containers") or []]
    if not containers:
        raise spec.SpecError("spec.workers.template.spec.containers", "at least one container is required")
    index = next((i for i, c in enumerate(containers) if c.get("name") == WORKER_CONTAINER), 0)
    containers[index] = _worker_container(containers[index], jobqueue)
    pod["containers"] = [_with_tmp(_secure(c)) for c in containers]
    if any(m.get("name") == TMP_VOLUME for c in pod["containers"] for m in c.get("volumeMounts") or []):
        volumes = [v for v in pod.get("volumes") or [] if v.get("name") != TMP_VOLUME]
        pod["volumes"] = [*volumes, {"name": TMP_VOLUME, "emptyDir": {}}]
    pod["terminationGracePeriodSeconds"] = jobqueue.termination_grace_period_seconds
    return template


def worker_deployment(jobqueue: spec.JobQueue, replicas: int | None = None) -> Body:
    """The Deployment the operator creates for a JobQueue with a pod template."""
    if jobqueue.spec.workers.template is None:
        raise ValueError("a JobQueue with deploymentRef has no owned Deployment")
    start = jobqueue.spec.scaling.min_replicas if replicas is None else replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": worker_deployment_name(jobqueue),
            "namespace": jobqueue.metadata.namespace,
            "labels": worker_labels(jobqueue),
            "ownerReferences": [owner_reference(jobqueue)],
        },
        "spec": {
            "replicas": start,
            "selector": {"matchLabels": selector_labels(jobqueue)},
            "template": pod_template(jobqueue),
        },
    }


def deployment_drift(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> Body | None:
    """A merge patch bringing an existing Deployment's template and labels to ``wanted``; replicas
    are never touched (the control loop owns them). ``None`` when nothing differs."""
    patch: Body = {}
    if existing.get("spec", {}).get("template") != wanted["spec"]["template"]:
        patch["spec"] = {"template": wanted["spec"]["template"]}
    labels = existing.get("metadata", {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted["metadata"]["labels"].items()):
        patch["metadata"] = {"labels": wanted["metadata"]["labels"]}
    return patch or None


# ---------------------------------------------------------------------------- conditions and status


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: ConditionType, true: bool, reason: str, message: str = "") -> Condition:
    state = ConditionStatus.TRUE if true else ConditionStatus.FALSE
    return Condition(type=kind, status=state, reason=reason, message=message)


def merge_conditions(
    current: Iterable[Condition], updates: Iterable[Condition], timestamp: float
) -> list[Condition]:
    """``current`` with ``updates`` merged in (lastTransitionTime moves only on a status change)."""
    merged = list(current)
    now = rfc3339(timestamp)
    for new in updates:
        old = next((c for c in merged if c.type == new.type), None)
        if old is not None and (old.status, old.reason, old.message) == (new.status, new.reason, new.message):
            continue
        merged = status.set_condition(merged, new, now)
    order = list(ConditionType)
    return sorted(merged, key=lambda c: order.index(c.type))


def paused_condition(body: Mapping[str, Any]) -> Condition:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(spec.PAUSED_ANNOTATION, "")).strip().lower() == "true":
        return condition(
            ConditionType.PAUSED, True, "PausedByAnnotation", f"{spec.PAUSED_ANNOTATION} is true"
        )
    if spec.is_paused(body):
        return condition(ConditionType.PAUSED, True, "PausedBySpec", "spec.scaling.paused is true")
    return condition(ConditionType.PAUSED, False, "NotPaused")


def spec_invalid_conditions(error: spec.SpecError) -> list[Condition]:
    message = "; ".join(f"{path}: {reason}" for path, reason in error.errors)
    return [
        condition(ConditionType.SPEC_VALID, False, "InvalidSpec", message),
        condition(ConditionType.READY, False, "InvalidSpec", "replicas are left untouched"),
    ]


def pass_conditions(result: PassResult, degraded: tuple[str, str] | None) -> list[Condition]:
    """SpecValid, Degraded, Ready and Active after a control pass; ``degraded`` is (reason, message)."""
    obs = result.observation
    has_work = obs is not None and (obs.backlog + obs.delayed) > 0
    replicas = result.decision.desired
    ready = degraded is None and obs is not None
    return [
        condition(ConditionType.SPEC_VALID, True, "Valid"),
        condition(ConditionType.DEGRADED, True, *degraded)
        if degraded
        else condition(ConditionType.DEGRADED, False, "AsExpected"),
        condition(ConditionType.READY, True, "Scaled", f"{replicas} replicas")
        if ready
        else condition(ConditionType.READY, False, degraded[0] if degraded else "NotProbed"),
        condition(ConditionType.ACTIVE, has_work or replicas > 0, _activity(has_work, replicas)),
    ]


def _activity(has_work: bool, replicas: int) -> str:
    if has_work:
        return "HasWork"
    return "HasReplicas" if replicas > 0 else "Idle"


def pass_status(result: PassResult, generation: int | None, now: float) -> Body:
    """Status fields (conditions and policy aside) after a control pass."""
    fields: Body = {
        "observedGeneration": generation,
        "replicas": result.decision.desired if result.scaled else result.current,
        "desiredReplicas": result.decision.desired,
        "lastDecision": result.decision.reason,
    }
    obs = result.observation
    if obs is not None:
        fields |= {
            "waiting": obs.waiting,
            "delayed": obs.delayed + obs.retry,
            "active": obs.active,
            "dead": obs.dead,
            "oldestAgeSeconds": round(obs.oldest_ready_age_s, 1),
        }
    throughput = result.decision.state.throughput
    fields["throughput"] = None if throughput is None else round(throughput, 3)
    if result.scaled:
        fields["lastScaleTime"] = rfc3339(now)
    return fields


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> Body:
    """The keys of ``new`` whose values differ from ``old`` (a merge patch of the status)."""
    return {key: value for key, value in new.items() if old.get(key) != value}


def dump_conditions(conditions: Iterable[Condition]) -> list[Body]:
    return [c.model_dump(by_alias=True, mode="json") for c in conditions]


def event(reference: Mapping[str, str], kind: str, reason: str, message: str, timestamp: float) -> Body:
    """A core/v1 Event about ``reference`` (``kind`` is Normal or Warning); the server names it."""
    now = rfc3339(timestamp)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": reference["namespace"], "generateName": "jobqueue-operator-"},
        "involvedObject": dict(reference),
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": MANAGED_BY},
        "reportingComponent": MANAGED_BY,
        "reportingInstance": MANAGED_BY,
        "action": reason,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
