"""The shape of ``spec.workers.template`` that the operator relies on, checked before it builds on it.

The CRD keeps the template as an object with unknown fields preserved (embedding the whole
PodTemplateSpec schema would make the CRD huge and tie it to one Kubernetes version), so an API
server accepts ``containers: "worker"`` or ``env: "A=1"`` there. The operator adds its environment,
ports, mounts and security defaults to the template (``worker_deployment.pod_template``); these
checks refuse, with the field path, every shape it could not build on, so a bad template becomes
``SpecValid=False`` instead of an exception in the control loop. Everything else about the pod is
the API server's to judge when the Deployment is created (its message is reported then).

Pure: no I/O, nothing imported from the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Problem = tuple[str, str]

ROOT = "spec.workers.template"
# Lists of objects inside a container, each keyed by the field every element must have.
CONTAINER_LISTS = {"env": "name", "ports": "containerPort", "volumeMounts": "mountPath"}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else "an object"


def _objects(path: str, value: Any, key: str | None) -> list[Problem]:
    """``value`` must be a list of objects, each with ``key`` when given."""
    if not isinstance(value, list):
        return [(path, f"must be a list of objects, not {_kind(value)}")]
    found: list[Problem] = []
    for index, item in enumerate(value):
        at = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            found.append((at, f"must be an object, not {_kind(item)}"))
        elif key is not None and key not in item:
            found.append((f"{at}.{key}", "is required"))
    return found


def _container(path: str, container: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    if not isinstance(container.get("name"), str) or not container["name"]:
        found.append((f"{path}.name", "is required (a string)"))
    for field, key in CONTAINER_LISTS.items():
        if container.get(field) is not None:
            found += _objects(f"{path}.{field}", container[field], key)
    context = container.get("securityContext")
    if context is not None and not isinstance(context, Mapping):
        found.append((f"{path}.securityContext", f"must be an object, not {_kind(context)}"))
    return found


def _labels(path: str, labels: Any) -> list[Problem]:
    if not isinstance(labels, Mapping):
        return [(path, f"must be an object of strings, not {_kind(labels)}")]
    return [
        (f"{path}.{key}", "must be a string") for key, value in labels.items() if not isinstance(value, str)
    ]


def problems(template: Any) -> list[Problem]:
    """``(path, reason)`` for each shape in a pod template the operator cannot build on."""
    if not isinstance(template, Mapping):
        return [(ROOT, f"must be an object (a PodTemplateSpec), not {_kind(template)}")]
    found: list[Problem] = []
    metadata = template.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            found.append((f"{ROOT}.metadata", f"must be an object, not {_kind(metadata)}"))
        elif metadata.get("labels") is not None:
            found += _labels(f"{ROOT}.metadata.labels", metadata["labels"])
    pod = template.get("spec")
    if not isinstance(pod, Mapping):
        return [*found, (f"{ROOT}.spec", f"must be an object (a PodSpec), not {_kind(pod)}")]
    containers = pod.get("containers")
    path = f"{ROOT}.spec.containers"
    if containers is None or (isinstance(containers, list) and not containers):
        found.append((path, "at least one container is required"))
    elif not isinstance(containers, list):
        found += _objects(path, containers, None)
    else:
        shape = _objects(path, containers, None)
        found += shape
        if not shape:
            for index, container in enumerate(containers):
                found += _container(f"{path}[{index}]", container)
    if pod.get("volumes") is not None:
        found += _objects(f"{ROOT}.spec.volumes", pod["volumes"], "name")
    return found
