"""The part of the API server's validation an operator that creates Deployments runs into.

A real API server refuses, with ``422 Invalid`` and a message naming each field, objects whose
metadata is malformed (names, label keys and values) and Deployments that cannot run (no selector,
a selector the template's labels do not match, no containers, a container without a name or an
image). The emulator runs these checks on every create and on the result of every patch, so the
operator's handling of such refusals is tested against the messages users will see. What it does not
check (the rest of the PodSpec, quotas, admission webhooks) is listed in docs/operator.md.

The messages follow the API server's: ``Deployment.apps "q1-worker" is invalid:
spec.template.spec.containers[0].image: Required value``, several problems in ``[...]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import kmock

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
NAMESPACES = kmock.resource("", "v1", "namespaces")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

Problem = tuple[str, str]


def _name_problems(path: str, name: Any, *, label: bool) -> list[Problem]:
    if not isinstance(name, str) or not name:
        return [(path, "Required value")]
    limit, pattern = (63, DNS1123_LABEL) if label else (253, DNS1123_SUBDOMAIN)
    if len(name) > limit:
        return [(path, f'Invalid value: "{name}": must be no more than {limit} characters')]
    if not pattern.match(name):
        kind = "RFC 1123 label" if label else "RFC 1123 subdomain"
        return [
            (
                path,
                f'Invalid value: "{name}": a lowercase {kind} must consist of lower case '
                "alphanumeric characters, '-' or '.'",
            )
        ]
    return []


def _label_problems(path: str, labels: Any) -> list[Problem]:
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [(path, "Invalid value: must be a map of strings")]
    found: list[Problem] = []
    for key, value in labels.items():
        name = str(key).rsplit("/", 1)[-1]
        if len(name) > 63 or not QUALIFIED_NAME.match(name):
            found.append(
                (
                    path,
                    f'Invalid value: "{key}": name part must be no more than 63 characters '
                    "of alphanumerics, '-', '_' or '.'",
                )
            )
        if not isinstance(value, str):
            found.append((f"{path}[{key}]", "Invalid value: must be a string"))
        elif len(value) > 63:
            found.append((path, f'Invalid value: "{value}": must be no more than 63 characters'))
        elif not LABEL_VALUE.match(value):
            found.append(
                (
                    path,
                    f'Invalid value: "{value}": a valid label must be an empty string or '
                    "consist of alphanumeric characters, '-', '_' or '.'",
                )
            )
    return found


def _container_problems(path: str, containers: Any) -> list[Problem]:
    if not isinstance(containers, list) or not containers:
        return [(path, "Required value")]
    found: list[Problem] = []
    for index, container in enumerate(containers):
        at = f"{path}[{index}]"
        if not isinstance(container, Mapping):
            found.append((at, "Invalid value: must be an object"))
            continue
        found += _name_problems(f"{at}.name", container.get("name"), label=True)
        if not isinstance(container.get("image"), str) or not container["image"].strip():
            found.append((f"{at}.image", "Required value"))
    return found


def _deployment_problems(body: Mapping[str, Any]) -> list[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return [("spec", "Required value")]
    found: list[Problem] = []
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        found.append(("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0"))
    selector = (
        (spec.get("selector") or {}).get("matchLabels") if isinstance(spec.get("selector"), Mapping) else None
    )
    template = spec.get("template") if isinstance(spec.get("template"), Mapping) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        found.append(("spec.selector", "Required value"))
    elif isinstance(labels, Mapping) and any(labels.get(k) != v for k, v in selector.items()):
        found.append(
            ("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
        )
    found += _label_problems("spec.template.metadata.labels", labels)
    pod = template.get("spec")
    if not isinstance(pod, Mapping):
        return [*found, ("spec.template.spec.containers", "Required value")]
    found += _container_problems("spec.template.spec.containers", pod.get("containers"))
    return found


def problems(resource: kmock.resource, body: Mapping[str, Any]) -> list[Problem]:
    """What the API server would refuse in ``body`` (a create, or the result of a patch)."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping):
        return [("metadata", "Required value")]
    found = _name_problems("metadata.name", meta.get("name"), label=resource == NAMESPACES)
    found += _label_problems("metadata.labels", meta.get("labels"))
    if resource == DEPLOYMENTS:
        found += _deployment_problems(body)
    return found


def message(kind: str, name: str, found: list[Problem]) -> str:
    """The API server's text for a refused object."""
    parts = [f"{path}: {reason}" for path, reason in found]
    detail = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return f'{kind} "{name}" is invalid: {detail}'
