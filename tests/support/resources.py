"""Resource metadata for the emulator: built-in kinds, CRD parsing and server-side Tables.

The emulator keeps discovery data in kmock's ``ResourceInfo`` and the few extra facts a real apiserver
knows about a resource (printer columns, where the scale subresource points) in :class:`ResourceExtras`.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import kmock
import yaml

from tests.support import selectors

CRD_RESOURCE = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclasses.dataclass(frozen=True)
class Column:
    """One server-side printer column (``additionalPrinterColumns`` in a CRD)."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclasses.dataclass(frozen=True)
class ResourceExtras:
    """What discovery does not carry but the emulator needs per resource."""

    columns: tuple[Column, ...] = ()
    scale_spec_path: str = ".spec.replicas"
    scale_status_path: str = ".status.replicas"
    scale_selector_path: str = ""


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """A resource with its discovery info and extras, ready to register."""

    resource: kmock.resource
    info: kmock.ResourceInfo
    extras: ResourceExtras = ResourceExtras()


AGE = Column("Age", ".metadata.creationTimestamp", type="date")


def _builtin(
    gvp: str,
    kind: str,
    *,
    namespaced: bool = True,
    shortnames: Iterable[str] = (),
    subresources: Iterable[str] = (),
    categories: Iterable[str] = (),
    extras: ResourceExtras | None = None,
) -> ResourceSpec:
    info = kmock.ResourceInfo(
        namespaced=namespaced,
        kind=kind,
        singular=kind.lower(),
        verbs=set(ALL_VERBS),
        shortnames=set(shortnames),
        subresources=set(subresources),
        categories=set(categories),
    )
    return ResourceSpec(kmock.resource(gvp), info, extras or ResourceExtras())


def builtin_resources() -> list[ResourceSpec]:
    """The built-in kinds an operator that scales Deployments talks to."""
    return [
        _builtin("v1/namespaces", "Namespace", namespaced=False, shortnames={"ns"}, subresources={"status"}),
        _builtin("v1/events", "Event", shortnames={"ev"}),
        _builtin("v1/secrets", "Secret"),
        _builtin("v1/configmaps", "ConfigMap", shortnames={"cm"}),
        _builtin("v1/services", "Service", shortnames={"svc"}, subresources={"status"}, categories={"all"}),
        _builtin("v1/serviceaccounts", "ServiceAccount", shortnames={"sa"}),
        _builtin("v1/pods", "Pod", shortnames={"po"}, subresources={"status"}, categories={"all"}),
        _builtin(
            "apps/v1/deployments",
            "Deployment",
            shortnames={"deploy"},
            subresources={"status", "scale"},
            categories={"all"},
            extras=ResourceExtras(
                columns=(
                    Column("Replicas", ".spec.replicas", type="integer"),
                    Column("Ready", ".status.readyReplicas", type="integer"),
                    AGE,
                ),
                scale_selector_path=".spec.selector.matchLabels",
            ),
        ),
        _builtin(
            "autoscaling/v2/horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            shortnames={"hpa"},
            subresources={"status"},
            categories={"all"},
        ),
        _builtin("coordination.k8s.io/v1/leases", "Lease"),
        _builtin(
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            shortnames={"crd", "crds"},
            subresources={"status"},
        ),
    ]


def crd_resources(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """The served resources (one per served version) declared by a CRD body."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec["group"]
    plural = names["plural"]
    kind = names["kind"]
    result: list[ResourceSpec] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = set((version.get("subresources") or {}).keys())
        scale = (version.get("subresources") or {}).get("scale") or {}
        columns = tuple(
            Column(
                name=col["name"],
                json_path=col["jsonPath"],
                type=col.get("type", "string"),
                description=col.get("description", ""),
                priority=int(col.get("priority", 0)),
                format=col.get("format", ""),
            )
            for col in version.get("additionalPrinterColumns") or []
        )
        info = kmock.ResourceInfo(
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            kind=kind,
            singular=names.get("singular") or kind.lower(),
            verbs=set(ALL_VERBS),
            shortnames=set(names.get("shortNames") or ()),
            categories=set(names.get("categories") or ()),
            subresources=subresources,
        )
        extras = ResourceExtras(
            columns=columns or (AGE,),
            scale_spec_path=scale.get("specReplicasPath", ".spec.replicas"),
            scale_status_path=scale.get("statusReplicasPath", ".status.replicas"),
            scale_selector_path=scale.get("labelSelectorPath", ""),
        )
        result.append(ResourceSpec(kmock.resource(group, version["name"], plural), info, extras))
    return result


def load_crd(path: str | pathlib.Path) -> dict[str, Any]:
    """Read the CustomResourceDefinition document from a YAML file (the first CRD in it)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            return doc
    raise ValueError(f"No CustomResourceDefinition in {path}")


def crd_status(crd: Mapping[str, Any]) -> dict[str, Any]:
    """The status an apiserver reports for an accepted, established CRD."""
    names = dict((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    now = now_rfc3339()
    return {
        "acceptedNames": names,
        "storedVersions": [
            v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage", False)
        ],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now},
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "lastTransitionTime": now,
            },
        ],
    }


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_age(timestamp: str | None) -> str:
    """Render an RFC 3339 timestamp as kubectl does in the AGE column."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((datetime.datetime.now(tz=datetime.UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(column: Column, body: Mapping[str, Any]) -> Any:
    value = selectors.jsonpath(body, column.json_path)
    if column.type == "date":
        return human_age(value if isinstance(value, str) else None)
    if value is None:
        return None
    if isinstance(value, dict | list):
        return str(value)
    return value


def render_table(
    items: list[dict[str, Any]], extras: ResourceExtras, resource_version: str
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table, which kubectl asks for to print ``kubectl get`` output."""
    columns = [
        Column("Name", ".metadata.name", format="name", description="Name of the object"),
        *extras.columns,
    ]
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": col.name,
                "type": "string" if col.type == "date" else col.type,
                "format": col.format,
                "description": col.description,
                "priority": col.priority,
            }
            for col in columns
        ],
        "rows": [
            {
                "cells": [_cell(col, item) for col in columns],
                "object": {
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": item.get("metadata", {}),
                },
            }
            for item in items
        ],
    }


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in (accept or "")
