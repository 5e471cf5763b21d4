"""The Helm chart, rendered by Helm's own engine and checked against the Kubernetes schemas.

Case matrix:

| value set                    | specific checks on top of lint, schemas 1.26/newest, restricted PSS |
| ---------------------------- | -------------------------------------------------------------------- |
| defaults                     | one standalone operator, all namespaces, one ClusterRole             |
| ci/namespaced-values.yaml    | a Role per served namespace, `--namespace` flags                     |
| ci/monitoring-values.yaml    | ServiceMonitor, PodMonitor, PrometheusRule, dashboard ConfigMap,     |
|                              | NetworkPolicy                                                        |
| ci/ha-values.yaml            | two pods, `--leader-elect`, a Lease Role, PodDisruptionBudget, no    |
|                              | shell in the command                                                 |
| ci/ha-namespaced-values.yaml | the Lease Role in the release namespace, no CRDs, image by digest    |

Plus: bad values are refused by values.schema.json with a message naming the key; every values key
is documented with a `# --` comment; the restricted-PSS checker itself flags insecure values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests.support.chart import CHART, NAMESPACE, RELEASE, VALUE_SETS, Doc, of_kind, one

OLDEST_KUBE = "1.26"
NEWEST_KUBE = kv_utils.major_minor(kv_utils.latest_version())
# Kinds that have no bundled schema: custom resources (prometheus-operator, kopf, ours).
NO_SCHEMA_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "JobQueue"}

# Resources that are cluster-scoped, so only a ClusterRole can grant them.
CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions"}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def render(chart: helm_python.Chart) -> Any:
    """Render a value set once per module; returns the objects (NOTES.txt and empty documents dropped)."""
    cache: dict[str, list[Doc]] = {}

    def _render(values: dict[str, Any]) -> list[Doc]:
        key = json.dumps(values, sort_keys=True)
        if key not in cache:
            out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            cache[key] = [
                doc
                for template, text in sorted(out.items())
                if template.endswith((".yaml", ".yml"))
                for doc in yaml.safe_load_all(text)
                if doc
            ]
        return cache[key]

    return _render


def container_args(deployment: Doc) -> list[str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return [*container.get("command", []), *container.get("args", [])]


# --- Helm lint and the Kubernetes schemas ---------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict_has_no_findings_above_info(name: str) -> None:
    result = helm_python.lint(str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    assert result["errors"] == []
    # Severity 1 is informational ("icon is recommended"); 2 and up are warnings and errors.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube", [OLDEST_KUBE, NEWEST_KUBE])
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_validates_strictly(render: Any, name: str, kube: str) -> None:
    docs = render(VALUE_SETS[name])
    assert docs, "nothing rendered"
    problems = []
    for doc in docs:
        label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if doc["kind"] not in NO_SCHEMA_KINDS:
                problems.append(f"{label}: no schema in Kubernetes {kube}")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{label}: {'.'.join(map(str, error.path))}: {error.message}")
    assert problems == []


def test_chart_kube_version_is_the_oldest_version_tested() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["kubeVersion"] == f">={OLDEST_KUBE}.0-0"
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == "0.1.0"


def test_objects_carry_the_common_labels(render: Any) -> None:
    for doc in render(VALUE_SETS["monitoring-values.yaml"]):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, doc["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        assert labels["helm.sh/chart"] == "jobqueue-operator-0.1.0", doc["kind"]


# --- values.schema.json -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": -1}, "at '/replicaCount': minimum: got -1, want 0"),
        ({"replicaCount": 2}, "at '/replicaCount': maximum: got 2, want 1"),
        ({"imagee": {"tag": "1.0"}}, "additional properties 'imagee' not allowed"),
        ({"image": {"tagg": "1.0"}}, "at '/image': additional properties 'tagg' not allowed"),
        ({"ha": {"enabled": True, "replicas": 1}}, "at '/ha/replicas': minimum: got 1, want 2"),
        ({"metrics": {"port": "8080"}}, "at '/metrics/port': got string, want integer"),
        ({"rbac": {"clusterWide": "no"}}, "at '/rbac/clusterWide': got string, want boolean"),
        ({"securityContext": {"runAsNonroot": True}}, "additional properties 'runAsNonroot' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "at '/metrics/serviceMonitor/interval'"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    chart: helm_python.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert message in str(refused.value)


def _object_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "properties" in node:
            yield path or "/", node
        for key, child in node.get("properties", {}).items():
            yield from _object_nodes(child, f"{path}/{key}")
        if isinstance(node.get("items"), dict):
            yield from _object_nodes(node["items"], f"{path}[]")


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_nodes = [
        path for path, node in _object_nodes(schema) if node.get("additionalProperties") is not False
    ]
    assert open_nodes == []


# Keys whose default is a whole Kubernetes object: the schema lists more fields than values.yaml sets.
PASS_THROUGH = {"podSecurityContext", "securityContext", "resources"}


def _schema_keys_missing_from_values(schema: dict[str, Any], values: Any, path: str = "") -> list[str]:
    missing = []
    for key, child in schema.get("properties", {}).items():
        if key not in values:
            missing.append(f"{path}.{key}")
        elif "properties" in child and key not in PASS_THROUGH:
            missing += _schema_keys_missing_from_values(child, values[key], f"{path}.{key}")
    return missing


def test_every_schema_key_has_a_default_in_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # "global" belongs to Helm (parent charts set it).
    assert _schema_keys_missing_from_values(schema, values) == [".global"]


KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w-]*):")


def test_every_values_key_has_a_doc_comment() -> None:
    """Each leaf key, or a map documented as a whole, has a `# --` comment right above it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    comment: list[str] = []
    undocumented = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = KEY_LINE.match(line)
        if not match:
            comment = [] if not stripped else comment
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [key for _, key, _ in stack] + [match["key"]]
        documented = any(c.startswith("# --") for c in comment) or any(doc for _, _, doc in stack)
        node: Any = values
        for key in path:
            node = node[key]
        if not documented and not (isinstance(node, dict) and node):
            undocumented.append(".".join(path))
        stack.append((indent, match["key"], documented))
        comment = []
    assert undocumented == []


# --- Pod Security Standard "restricted" ----------------------------------------------------------

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _container_violations(pod_ctx: dict[str, Any], container: dict[str, Any]) -> list[str]:
    name = container["name"]
    ctx = container.get("securityContext") or {}
    out = []
    if ctx.get("privileged"):
        out.append(f"{name}: privileged")
    if ctx.get("allowPrivilegeEscalation") is not False:
        out.append(f"{name}: allowPrivilegeEscalation must be false")
    caps = ctx.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append(f"{name}: capabilities must drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append(f"{name}: adds capabilities {caps['add']}")
    if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
        out.append(f"{name}: runAsNonRoot must be true")
    if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
        out.append(f"{name}: runs as UID 0")
    seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
    if seccomp not in {"RuntimeDefault", "Localhost"}:
        out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, is {seccomp}")
    if ctx.get("procMount", "Default") != "Default":
        out.append(f"{name}: procMount")
    if any(port.get("hostPort") for port in container.get("ports", [])):
        out.append(f"{name}: hostPort")
    return out


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """The checks of the "restricted" Pod Security Standard (baseline included) on a pod spec."""
    out = [f"host namespace: {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(key)]
    pod_ctx = pod_spec.get("securityContext") or {}
    if (pod_ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("pod seccompProfile Unconfined")
    if pod_ctx.get("runAsUser") == 0:
        out.append("pod runs as UID 0")
    unsafe_sysctls = [
        s["name"] for s in pod_ctx.get("sysctls", []) if not s["name"].startswith("net.ipv4.ip_")
    ]
    out += [f"sysctl {s}" for s in unsafe_sysctls]
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if kinds - ALLOWED_VOLUME_TYPES:
            out.append(f"volume {volume['name']}: {sorted(kinds)}")
    for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        out += _container_violations(pod_ctx, container)
    return out


@pytest.mark.parametrize("name", VALUE_SETS)
def test_operator_pod_meets_restricted_pod_security(render: Any, name: str) -> None:
    pods = [d["spec"]["template"]["spec"] for d in render(VALUE_SETS[name]) if d["kind"] == "Deployment"]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []


@pytest.mark.parametrize(
    ("values", "violation"),
    [
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}, "drop ALL"),
        (
            {"podSecurityContext": {"runAsNonRoot": False}, "securityContext": {"runAsNonRoot": False}},
            "runAsNonRoot",
        ),
        (
            {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}, "securityContext": {}},
            "seccompProfile",
        ),
        ({"securityContext": {"privileged": True}}, "privileged"),
    ],
)
def test_restricted_checker_flags_insecure_values(
    render: Any, values: dict[str, Any], violation: str
) -> None:
    """The checker above must be able to fail: weaken one setting and it says which."""
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert any(violation in v for v in restricted_violations(pod))


def test_operator_pod_defaults(render: Any) -> None:
    deployment = one(render({}), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["automountServiceAccountToken"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["image"] == "jobqueue/operator:0.1.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


# --- Operator command line, RBAC, leader election ----------------------------------------------


def test_default_runs_one_standalone_operator_for_all_namespaces(render: Any) -> None:
    deployment = one(render({}), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert container_args(deployment) == [
        "jobqueue",
        "operator",
        "run",
        "--metrics-port=8080",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--standalone",
        "--all-namespaces",
    ]


def _rule_resources(role: Doc) -> set[str]:
    return {resource for rule in role["rules"] for resource in rule["resources"]}


FORBIDDEN_VERBS = {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"}


def test_rbac_rules_are_explicit(render: Any) -> None:
    for name in VALUE_SETS:
        for role in [
            *of_kind(render(VALUE_SETS[name]), "ClusterRole"),
            *of_kind(render(VALUE_SETS[name]), "Role"),
        ]:
            for rule in role["rules"]:
                assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
                assert "*" not in [*rule["apiGroups"], *rule["resources"], *rule["verbs"]], rule
                assert not FORBIDDEN_VERBS & set(rule["verbs"]), rule


def test_cluster_wide_rbac_is_one_cluster_role(render: Any) -> None:
    docs = render({})
    assert of_kind(docs, "Role") == [] and of_kind(docs, "RoleBinding") == []
    role = one(docs, "ClusterRole")
    assert {"jobqueues", "jobqueues/status", "deployments", "deployments/scale", "pods", "secrets"} <= (
        _rule_resources(role)
    )
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE,
        }
    ]


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ({"rbac": {"clusterWide": False}}, [NAMESPACE]),
        (VALUE_SETS["namespaced-values.yaml"], ["team-a", "team-b"]),
    ],
)
def test_namespaced_rbac_uses_roles(render: Any, values: dict[str, Any], namespaces: list[str]) -> None:
    docs = render(values)
    # Only the cluster-scoped reads kopf needs stay cluster-wide.
    assert _rule_resources(one(docs, "ClusterRole")) <= CLUSTER_SCOPED
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == namespaces
    for role in roles:
        assert {"jobqueues", "deployments", "deployments/scale", "pods", "secrets"} <= _rule_resources(role)
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == namespaces
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    args = container_args(one(docs, "Deployment"))
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={ns}" for ns in namespaces]


def test_ha_runs_two_pods_that_elect_a_leader_through_a_lease(render: Any) -> None:
    docs = render(VALUE_SETS["ha-values.yaml"])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["jobqueue", "operator", "run"]  # no shell, nothing computed at start
    args = container["args"]
    assert "--standalone" not in args and "--leader-elect" in args
    assert f"--leader-elect-lease-name={RELEASE}-jobqueue-operator" in args
    assert f"--leader-elect-namespace={NAMESPACE}" in args
    assert {"--leader-elect-lease-duration=15", "--leader-elect-renew-deadline=10"} <= set(args)
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}
    ]
    binding = one(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert "leases" not in _rule_resources(one(docs, "ClusterRole"))  # never cluster-wide
    assert {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")} == {
        "jobqueues.jobqueue.dev"
    }  # no peering CRDs
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_ha_namespaced_keeps_the_lease_in_the_release_namespace(render: Any) -> None:
    docs = render(VALUE_SETS["ha-namespaced-values.yaml"])
    roles = {r["metadata"]["name"]: r for r in of_kind(docs, "Role")}
    lease_roles = [r for r in roles.values() if "leases" in _rule_resources(r)]
    assert [r["metadata"]["namespace"] for r in lease_roles] == [NAMESPACE]
    assert all("leases" not in _rule_resources(r) for r in roles.values() if r not in lease_roles)
    assert "--leader-elect-lease-duration=20" in container_args(one(docs, "Deployment"))
    assert of_kind(docs, "CustomResourceDefinition") == []  # the JobQueue CRD is off
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "jobqueue/operator@sha256:"
    )


# --- Monitoring objects -----------------------------------------------------------------------------


def test_monitoring_objects_are_opt_in(render: Any) -> None:
    kinds = {d["kind"] for d in render({})}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"}


def test_service_monitor_scrapes_the_metrics_service(render: Any) -> None:
    docs = render(VALUE_SETS["monitoring-values.yaml"])
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # the series' own `namespace` label must win
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_prometheus_rule_holds_the_alerts_file(render: Any) -> None:
    rule = one(render(VALUE_SETS["monitoring-values.yaml"]), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_dashboard_config_map_holds_the_dashboard(render: Any) -> None:
    config_map = one(render(VALUE_SETS["monitoring-values.yaml"]), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "jobqueue"
    shipped = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(config_map["data"]["jobqueue.json"]) == shipped


def test_network_policy_allows_scrapes_dns_api_and_redis(render: Any) -> None:
    policy = one(render(VALUE_SETS["monitoring-values.yaml"]), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443, 6443, 6379} <= egress_ports
    ingress_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"metrics", "health"}


# --- The JobQueue CRD (generated from the pydantic models into templates/crd.yaml) -------------------


@pytest.mark.skipif(
    not (CHART / "templates" / "crd.yaml").exists(), reason="templates/crd.yaml not generated yet"
)
def test_jobqueue_crd_follows_crds_install_and_keep(render: Any) -> None:
    crd = next(
        d for d in of_kind(render({}), "CustomResourceDefinition") if d["spec"]["group"] == "jobqueue.dev"
    )
    assert crd["metadata"]["name"] == "jobqueues.jobqueue.dev"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    not_kept = next(d for d in of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"))
    assert "helm.sh/resource-policy" not in (not_kept["metadata"].get("annotations") or {})
    assert of_kind(render({"crds": {"install": False}}), "CustomResourceDefinition") == []
