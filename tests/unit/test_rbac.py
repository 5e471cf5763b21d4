"""The chart's RBAC grants exactly what the operator's code calls: ``kube_api.CALLS`` (declared next
to each request) plus what kopf does for it (``kube_api.KOPF_CALLS``), nothing more.

Case matrix: cluster-wide defaults and namespaced values (peering rules, only present with HA, are
kopf's and left out).
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
PEERING = {"kopfpeerings", "clusterkopfpeerings"}


def granted(values: dict[str, Any]) -> set[ApiCall]:
    with helm_python.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name="jq", namespace="jobqueue-system", is_install=True)
    docs = [d for name, text in out.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    return {
        ApiCall(group, resource, verb)
        for doc in docs
        if doc["kind"] in ("ClusterRole", "Role")
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if resource not in PEERING
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("values", [{}, {"rbac": {"clusterWide": False}}], ids=["cluster-wide", "namespaced"])
def test_rbac_is_exactly_what_the_code_calls(values: dict[str, Any]) -> None:
    needed = kube_api.CALLS | kube_api.KOPF_CALLS
    rules = granted(values)
    assert sorted(needed - rules) == [], "missing from charts/jobqueue-operator/templates/_rbac.tpl"
    assert sorted(rules - needed) == [], "granted but never used"
