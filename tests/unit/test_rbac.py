"""The chart's RBAC grants exactly what the operator's code calls: ``kube_api.CALLS`` (declared next
to each request) plus what kopf does for it (``kube_api.KOPF_CALLS``) and, with HA, the Lease of
leader election (``kube_api.LEASE_CALLS``), nothing more.

Case matrix: cluster-wide defaults and namespaced values, each without and with HA; with HA the
Lease rules are in a Role of the release namespace only, never in a ClusterRole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from jobqueue_operator import kube_api
from jobqueue_operator.kube_api import ApiCall

CHART = Path(__file__).resolve().parents[2] / "charts" / "jobqueue-operator"
NAMESPACE = "jobqueue-system"


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="jq", namespace=NAMESPACE, is_install=True)
    return [d for name, text in out.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]


def granted(docs: list[dict[str, Any]], kinds: tuple[str, ...] = ("ClusterRole", "Role")) -> set[ApiCall]:
    return {
        ApiCall(group, resource, verb)
        for doc in docs
        if doc["kind"] in kinds
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


VALUES = {
    "cluster-wide": {},
    "namespaced": {"rbac": {"clusterWide": False}},
    "cluster-wide-ha": {"ha": {"enabled": True}},
    "namespaced-ha": {"rbac": {"clusterWide": False}, "ha": {"enabled": True}},
}


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_rbac_is_exactly_what_the_code_calls(values: dict[str, Any]) -> None:
    ha = bool(values.get("ha"))
    needed = kube_api.CALLS | kube_api.KOPF_CALLS | (kube_api.LEASE_CALLS if ha else frozenset())
    rules = granted(rendered(values))
    assert sorted(needed - rules) == [], "missing from charts/jobqueue-operator/templates/_rbac.tpl"
    assert sorted(rules - needed) == [], "granted but never used"


@pytest.mark.parametrize("values", [VALUES["cluster-wide-ha"], VALUES["namespaced-ha"]], ids=["cw", "ns"])
def test_leases_only_in_the_release_namespace(values: dict[str, Any]) -> None:
    docs = rendered(values)
    assert granted(docs, ("ClusterRole",)) & kube_api.LEASE_CALLS == set()
    lease_roles = [d for d in docs if d["kind"] == "Role" and granted([d]) & kube_api.LEASE_CALLS]
    assert [r["metadata"]["namespace"] for r in lease_roles] == [NAMESPACE]
