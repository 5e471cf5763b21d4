"""Names the chart generates are names a real API server accepts, whatever the release is called.

Neither `helm lint` nor the Kubernetes OpenAPI schemas check name lengths or forms, so an object
that renders and validates can still be refused at install time (a 50-character release name once
gave the metrics Service a 71-character name).

Case matrix: Helm's longest release names (53 characters: plain, starting with a digit, with a dot,
containing the chart's name) and 63-character overrides, times the defaults and every
`ci/*-values.yaml`. For every object:

| what                                      | rule                                                   |
| ----------------------------------------- | ------------------------------------------------------ |
| `metadata.name` of a Service              | DNS-1035 label (63, starts with a letter)              |
| `metadata.name` of a CRD                  | DNS-1123 subdomain (`<plural>.<group>`)                |
| `metadata.name` of anything else          | DNS-1123 label (63; pod hostnames come from it)        |
| `metadata.namespace`                      | DNS-1123 label                                         |
| label keys and values (metadata, selectors, pod template, affinity) | qualified name / label value (63) |
| port names                                | IANA service name (15)                                 |
| names that point at other objects         | resolve: roleRef, subjects, ServiceAccount, selectors |

Plus `watchNamespaces`: patterns are refused with namespaced RBAC (a Role would go into a namespace
named `team-*`), and kept for a cluster-wide operator, whose `--namespace` takes globs, with HA too
(its Lease and the Lease's Role are in the release namespace).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import helm_python
import pytest

from tests.support import chart
from tests.support.chart import Doc, of_kind, one

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(rf"{DNS1123_LABEL.pattern}(\.{DNS1123_LABEL.pattern})*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
IANA_SVC_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def _release(seed: str) -> str:
    """`seed` padded to Helm's maximum release name length (53), never ending in a dash."""
    name = (seed + "-abcdefghijklmnopqrstuvwxyz0123456789" * 2)[:53]
    assert helm_python.validate_release_name(name) is None
    return name if not name.endswith("-") else name[:-1] + "z"


RELEASES = {
    "plain": _release("payments-platform-production-eu-central"),
    "digit-first": _release("2024-payments-platform"),
    "dotted": _release("team.payments"),
    "contains-chart-name": _release("eu-jobqueue-operator"),
}

# 63-character overrides (the most values.schema.json allows) with every optional object on.
EVERYTHING_ON = chart.VALUE_SETS["monitoring-values.yaml"] | chart.VALUE_SETS["ha-values.yaml"]
OVERRIDES = {
    "fullnameOverride-63": EVERYTHING_ON | {"fullnameOverride": "o" * 30 + "-" + "p" * 32},
    "nameOverride-63": EVERYTHING_ON | {"nameOverride": "n" * 62 + "x"},
    "digit-first-fullnameOverride": EVERYTHING_ON | {"fullnameOverride": "1" + "q" * 62},
}
CASES = [
    pytest.param(values, release, id=f"{set_name}-{release_id}")
    for set_name, values in chart.VALUE_SETS.items()
    for release_id, release in RELEASES.items()
] + [pytest.param(values, RELEASES["plain"], id=set_name) for set_name, values in OVERRIDES.items()]


def _name_problem(text: str, rule: re.Pattern[str], limit: int) -> str | None:
    if len(text) > limit:
        return f"{text!r} has {len(text)} characters (at most {limit})"
    if not rule.fullmatch(text):
        return f"{text!r} does not match {rule.pattern}"
    return None


def _label_problems(where: str, labels: dict[str, Any]) -> Iterator[str]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (problem := _name_problem(prefix, DNS1123_SUBDOMAIN, 253)):
            yield f"{where}: label key prefix {problem}"
        if problem := _name_problem(name, QUALIFIED_NAME, 63):
            yield f"{where}: label key {problem}"
        if not isinstance(value, str):
            yield f"{where}: label {key} is {value!r}, not a string"
        elif problem := _name_problem(value, LABEL_VALUE, 63):
            yield f"{where}: label {key} value {problem}"


def _label_maps(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every label map in an object: `labels` and `matchLabels` anywhere, a Service's selector."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key in {"labels", "matchLabels"} and isinstance(child, dict):
                yield f"{path}.{key}", child
            else:
                yield from _label_maps(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _label_maps(child, f"{path}[{index}]")


def _port_names(doc: Doc) -> Iterator[str]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        yield from (port["name"] for port in container.get("ports", []) if "name" in port)
    if doc["kind"] == "Service":
        yield from (port["name"] for port in spec.get("ports", []))


def name_problems(doc: Doc) -> Iterator[str]:
    kind, meta = doc["kind"], doc["metadata"]
    where = f"{kind}/{meta['name']}"
    rule, limit = {
        "Service": (DNS1035_LABEL, 63),
        "CustomResourceDefinition": (DNS1123_SUBDOMAIN, 253),
    }.get(kind, (DNS1123_LABEL, 63))
    if problem := _name_problem(meta["name"], rule, limit):
        yield f"{where}: name {problem}"
    if "namespace" in meta and (problem := _name_problem(meta["namespace"], DNS1123_LABEL, 63)):
        yield f"{where}: namespace {problem}"
    for path, labels in _label_maps(doc, kind):
        yield from _label_problems(f"{where} {path}", labels)
    if kind == "Service":
        yield from _label_problems(f"{where} spec.selector", doc["spec"].get("selector", {}))
    for port in _port_names(doc):
        if problem := _name_problem(port, IANA_SVC_NAME, 15):
            yield f"{where}: port name {problem}"


@pytest.mark.parametrize(("values", "release"), CASES)
def test_every_name_and_label_is_one_the_api_server_accepts(values: dict[str, Any], release: str) -> None:
    docs = chart.render(values, release=release)
    assert docs
    assert [problem for doc in docs for problem in name_problems(doc)] == []


def _names(docs: list[Doc], kind: str, namespace: str | None = None) -> set[str]:
    return {
        d["metadata"]["name"]
        for d in of_kind(docs, kind)
        if namespace is None or d["metadata"].get("namespace") == namespace
    }


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


@pytest.mark.parametrize(("values", "release"), CASES)
def test_names_that_point_at_other_objects_resolve(values: dict[str, Any], release: str) -> None:
    docs = chart.render(values, release=release)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    account = one(docs, "ServiceAccount")["metadata"]
    assert pod["spec"]["serviceAccountName"] == account["name"]
    for binding in [*of_kind(docs, "RoleBinding"), *of_kind(docs, "ClusterRoleBinding")]:
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        assert ref["name"] in _names(docs, ref["kind"], namespace), binding["metadata"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    assert _selects(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    service = one(docs, "Service")
    assert _selects(service["spec"]["selector"], pod["metadata"]["labels"])
    for selecting in [*of_kind(docs, "PodDisruptionBudget"), *of_kind(docs, "NetworkPolicy")]:
        selector = selecting["spec"].get("selector") or selecting["spec"]["podSelector"]
        assert _selects(selector["matchLabels"], pod["metadata"]["labels"]), selecting["kind"]
    for monitor in of_kind(docs, "ServiceMonitor"):
        assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    text = chart.notes(values, release=release)
    assert f"service {service['metadata']['name']}," in text
    assert f"deployment/{deployment['metadata']['name']}\n" in text


def test_a_long_release_keeps_its_whole_name_in_every_object_name() -> None:
    """Truncation cuts the chart's name, never the release's: two long releases never collide."""
    release = RELEASES["plain"]
    docs = chart.render(EVERYTHING_ON, release=release)
    generated = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    assert generated
    assert [d["metadata"]["name"] for d in generated if not d["metadata"]["name"].startswith(release)] == []


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"serviceAccount": {"name": "Operator_SA"}}, "/serviceAccount/name"),
        ({"metrics": {"serviceMonitor": {"namespace": "Monitoring"}}}, "/metrics/serviceMonitor/namespace"),
        ({"metrics": {"prometheusRule": {"namespace": "m" * 64}}}, "/metrics/prometheusRule/namespace"),
        ({"grafana": {"dashboard": {"namespace": "grafana.io"}}}, "/grafana/dashboard/namespace"),
        ({"fullnameOverride": "o" * 64}, "/fullnameOverride"),
    ],
)
def test_names_given_in_values_are_checked_by_the_schema(values: dict[str, Any], path: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.render(values)
    assert f"at '{path}'" in str(refused.value)


# --- watchNamespaces: names where the chart creates objects, patterns where kopf matches -----------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"rbac": {"clusterWide": False}, "watchNamespaces": ["team-a", "team-*"]},
            "at '/watchNamespaces/1': value must be 'a namespace name, not a pattern",
        ),
        ({"rbac": {"clusterWide": False}, "watchNamespaces": ["!team-b"]}, "at '/watchNamespaces/0'"),
        ({"rbac": {"clusterWide": False}, "watchNamespaces": ["Team-A"]}, "at '/watchNamespaces/0'"),
        ({"rbac": {"clusterWide": False}, "watchNamespaces": ["n" * 64]}, "at '/watchNamespaces/0'"),
        ({"watchNamespaces": ["team_a"]}, "at '/watchNamespaces/0'"),
    ],
    ids=["namespaced-glob", "namespaced-negation", "uppercase", "too-long", "underscore"],
)
def test_watch_namespaces_patterns_are_refused_where_objects_go_into_them(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.render(values)
    assert message in str(refused.value)


@pytest.mark.parametrize("ha", [False, True], ids=["one-pod", "ha"])
def test_watch_namespaces_patterns_stay_with_a_cluster_wide_operator(ha: bool) -> None:
    patterns = ["team-*", "!team-sandbox", "batch-?"]
    docs = chart.render({"watchNamespaces": patterns, "ha": {"enabled": ha}})
    # With HA, only the Lease's Role and RoleBinding, in the release namespace.
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role")] == [chart.NAMESPACE] * ha
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "RoleBinding")] == [chart.NAMESPACE] * ha
    assert {d["metadata"].get("namespace") for d in docs} <= {None, chart.NAMESPACE}
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in container["args"] if a.startswith("--namespace")] == [
        f"--namespace={p}" for p in patterns
    ]
    assert "--all-namespaces" not in container["args"]
    resources = {r for rule in one(docs, "ClusterRole")["rules"] for r in rule["resources"]}
    assert {"jobqueues", "deployments", "pods", "secrets"} <= resources


def test_namespaced_operator_gets_a_role_in_each_named_namespace() -> None:
    docs = chart.render({"rbac": {"clusterWide": False}, "watchNamespaces": ["team-a", "team-b"]})
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["team-a", "team-b"]
