"""The worker Deployment of a JobQueue with a pod template, built as a plain dict (pure, no I/O).

``worker_deployment`` is what the control loop creates; ``deployment_drift`` is the JSON patch that
brings an existing one back to it (never its replicas: the scaling pass owns those), found by
comparing the ``jobqueue.dev/template-hash`` annotation with the hash of what is wanted, so fields
the API server defaults in the template never read as drift; ``owned_by`` tells an owned Deployment
from a foreign one of the same name.

Names and label values derived from a JobQueue's name fit what the API server accepts however long
that name is (``derived_name``, ``label_value``): a label value has at most 63 characters, so a
longer name is cut and ends in a hash of the whole name, as Helm's helpers and controllers do.
What the operator adds to the template: Kubernetes' recommended labels, the ``JOBQUEUE_*``
environment (``JobQueue.worker_env()``), the Redis URL from its Secret, the pod's name from the
downward API, secure container defaults unless the template sets them, a writable ``/tmp`` when the
root filesystem is read-only, a ``metrics`` port and ``terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator import redis_spec, spec

Body = dict[str, Any]

MANAGED_BY: Final = spec.OPERATOR_NAME
JOBQUEUE_LABEL: Final = f"{spec.GROUP}/jobqueue"
COMPONENT: Final = "worker"
REDIS_URL_ENV: Final = "JOBQUEUE_REDIS_URL"
POD_NAME_ENV: Final = "JOBQUEUE_POD_NAME"
WORKER_CONTAINER: Final = "worker"
TMP_VOLUME: Final = "jobqueue-tmp"
TEMPLATE_HASH: Final = f"{spec.GROUP}/template-hash"
LABEL_VALUE_LIMIT: Final = 63
# A ReplicaSet is named <deployment>-<pod-template-hash> (up to 10 characters), within 253.
DEPLOYMENT_NAME_LIMIT: Final = 242
_HASH_CHARS: Final = 10

# Applied to every container unless its template sets the key (the Pod Security "restricted" profile).
SECURE_CONTAINER_DEFAULTS: Final[Mapping[str, Any]] = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def derived_name(base: str, suffix: str = "", limit: int = LABEL_VALUE_LIMIT) -> str:
    """``base + suffix`` if it fits ``limit``, else ``base`` cut short, a hash of it, then ``suffix``.

    The result starts as ``base`` does and ends with ``suffix`` (or the hash): alphanumeric ends
    when both are, as names and label values need."""
    whole = base + suffix
    if len(whole) <= limit:
        return whole
    keep = limit - len(suffix) - _HASH_CHARS - 1
    return f"{base[:keep].rstrip('-.')}-{_digest(base)}{suffix}"


def label_value(name: str) -> str:
    """A label value standing for ``name`` (the name itself when it fits 63 characters)."""
    return derived_name(name)


def worker_deployment_name(jobqueue: spec.JobQueue) -> str:
    """The Deployment whose replicas are set: the referenced one, else ``<jobqueue>-worker``."""
    ref = jobqueue.spec.workers.deployment_ref
    if ref is not None:
        return ref.name
    return derived_name(jobqueue.metadata.name, "-worker", DEPLOYMENT_NAME_LIMIT)


def selector_labels(jobqueue: spec.JobQueue) -> dict[str, str]:
    """The owned Deployment's selector (immutable once created)."""
    return {JOBQUEUE_LABEL: label_value(jobqueue.metadata.name), "app.kubernetes.io/component": COMPONENT}


def worker_labels(jobqueue: spec.JobQueue, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Kubernetes' recommended labels, over the template's own (which may name the app)."""
    labels = {"app.kubernetes.io/name": "jobqueue-worker", **(extra or {})}
    return labels | {
        "app.kubernetes.io/instance": label_value(jobqueue.metadata.name),
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
    return env + redis_spec.worker_tls(jobqueue.spec.queue.redis.tls).env


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
    tls_mounts = redis_spec.worker_tls(jobqueue.spec.queue.redis.tls).mounts
    if tls_mounts:
        ours = {m["name"] for m in tls_mounts}
        own = [m for m in container.get("volumeMounts") or [] if m.get("name") not in ours]
        container["volumeMounts"] = own + tls_mounts
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
    tls_volumes = redis_spec.worker_tls(jobqueue.spec.queue.redis.tls).volumes
    if tls_volumes:
        ours = {v["name"] for v in tls_volumes}
        pod["volumes"] = [v for v in pod.get("volumes") or [] if v.get("name") not in ours] + tls_volumes
    pod["terminationGracePeriodSeconds"] = jobqueue.termination_grace_period_seconds
    return template


def worker_deployment(jobqueue: spec.JobQueue, replicas: int | None = None) -> Body:
    """The Deployment the operator creates for a JobQueue with a pod template."""
    if jobqueue.spec.workers.template is None:
        raise ValueError("a JobQueue with deploymentRef has no owned Deployment")
    start = jobqueue.spec.scaling.min_replicas if replicas is None else replicas
    template = pod_template(jobqueue)
    labels = worker_labels(jobqueue)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": worker_deployment_name(jobqueue),
            "namespace": jobqueue.metadata.namespace,
            "labels": labels,
            "annotations": {TEMPLATE_HASH: template_hash(template, labels)},
            "ownerReferences": [owner_reference(jobqueue)],
        },
        "spec": {
            "replicas": start,
            "selector": {"matchLabels": selector_labels(jobqueue)},
            "template": template,
        },
    }


def template_hash(template: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """What the operator wants of a Deployment, hashed (replicas aside)."""
    return _digest(json.dumps({"template": template, "labels": labels}, sort_keys=True))


def owned_by(deployment: Mapping[str, Any], uid: str | None) -> bool:
    """Whether the Deployment's controller reference is the JobQueue with this uid."""
    refs = (deployment.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def controller_of(deployment: Mapping[str, Any]) -> str | None:
    """``Kind/name`` of the Deployment's controller reference, if it has one."""
    refs = (deployment.get("metadata") or {}).get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None)
    return None if ref is None else f"{ref.get('kind')}/{ref.get('name')}"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What tells an up-to-date owned Deployment from a stale one: its template hash and labels.
    The control loop keeps this per JobQueue (not the whole Deployment, a few KB each), and builds
    the Deployment only when it has to be created or patched."""

    template_hash: str
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, wanted: Mapping[str, Any]) -> Stamp:
        meta = wanted["metadata"]
        return cls(meta["annotations"][TEMPLATE_HASH], tuple(sorted(meta["labels"].items())))

    def matches(self, existing: Mapping[str, Any]) -> bool:
        meta = existing.get("metadata") or {}
        labels = meta.get("labels") or {}
        same_hash = (meta.get("annotations") or {}).get(TEMPLATE_HASH) == self.template_hash
        return same_hash and all(labels.get(k) == v for k, v in self.labels)


def deployment_drift(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Body] | None:
    """A JSON patch bringing an existing Deployment's template, labels and template hash to
    ``wanted`` (the whole template is replaced, so a field removed from the spec goes too); replicas
    are never touched (the control loop owns them). ``None`` when the hash and the labels match."""
    if Stamp.of(wanted).matches(existing):
        return None
    meta = existing.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    wanted_meta = wanted["metadata"]
    same_hash = annotations.get(TEMPLATE_HASH) == wanted_meta["annotations"][TEMPLATE_HASH]
    ops: list[Body] = [
        {"op": "add", "path": "/metadata/labels", "value": labels | wanted_meta["labels"]},
        {"op": "add", "path": "/metadata/annotations", "value": annotations | wanted_meta["annotations"]},
    ]
    if not same_hash:
        ops.append({"op": "replace", "path": "/spec/template", "value": wanted["spec"]["template"]})
    return ops
