"""The Argo CD and Flux examples in examples/gitops/ install what docs/helm-chart.md says.

Argo CD's and Flux's CRDs are not at hand, so each object is checked against a JSON Schema written
here from their API references (argoproj.io/v1alpha1 Application; Flux's
source.toolkit.fluxcd.io/v1 GitRepository and helm.toolkit.fluxcd.io/v2 HelmRelease): required
fields, enums and formats, and no field the API does not have. Then what the examples mean:

- argocd-application.yaml: the CRD Application never prunes and has no finalizer, and its `crds/`
  holds the chart's CRD; the chart's Application installs no CRD and renders with its values.
- argocd-workers-application.yaml: ignores, and respects on sync, the referenced Deployment's
  `/spec/replicas`.
- flux-helmrelease.yaml: the HelmRelease's source is the GitRepository, whose ignore rules keep the
  chart; the chart renders with its values and keeps its CRD (Flux runs Helm).
- thumbnail-workers.yaml: a valid Deployment without `replicas`, the one
  examples/jobqueue-deployment-ref.yaml names, with settings that match that JobQueue.
- every example is mentioned in docs/helm-chart.md.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from tests.support import chart
from worker_runtime import settings

EXAMPLES = chart.ROOT / "examples" / "gitops"
Doc = dict[str, Any]

DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
STRINGS = {"type": "array", "items": {"type": "string"}}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _resource(api_version: str, kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": metadata, "spec": spec},
        ("apiVersion", "kind", "metadata", "spec"),
    )


def _metadata(**extra: Any) -> dict[str, Any]:
    """Object metadata: a name and a namespace required; labels, annotations and `extra` allowed."""
    return {
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": NAME,
            "namespace": NAME,
            "labels": {"type": "object"},
            "annotations": {"type": "object"},
            **extra,
        },
    }


ARGO_SYNC_OPTIONS = (
    "Validate|CreateNamespace|PruneLast|ApplyOutOfSyncOnly|PrunePropagationPolicy|Replace|ServerSideApply"
    "|FailOnSharedResource|RespectIgnoreDifferences|SkipDryRunOnMissingResource|Prune|Delete"
)
ARGO_FINALIZER = r"^resources-finalizer\.argocd\.argoproj\.io(/(background|foreground))?$"
ARGO_HELM = _object(
    {
        "releaseName": {"type": "string", "maxLength": 53},
        "values": {"type": "string"},
        "valuesObject": {"type": "object"},
        "valueFiles": STRINGS,
        "skipCrds": {"type": "boolean"},
    }
)
ARGO_SOURCE = _object(
    {
        "repoURL": {"type": "string", "pattern": r"^(https?|ssh)://"},
        "targetRevision": {"type": "string"},
        "path": {"type": "string"},
        "chart": {"type": "string"},
        "helm": ARGO_HELM,
    },
    ("repoURL",),
)
ARGO_IGNORE_DIFFERENCES = _object(
    {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "jsonPointers": STRINGS,
        "jqPathExpressions": STRINGS,
        "managedFieldsManagers": STRINGS,
    },
    ("kind",),
)
ARGO_SYNC_POLICY = _object(
    {
        "automated": _object(
            {"prune": {"type": "boolean"}, "selfHeal": {"type": "boolean"}, "allowEmpty": {"type": "boolean"}}
        ),
        "syncOptions": {
            "type": "array",
            "items": {"type": "string", "pattern": rf"^({ARGO_SYNC_OPTIONS})=[A-Za-z]+$"},
        },
    }
)
ARGO_APPLICATION = _resource(
    "argoproj.io/v1alpha1",
    "Application",
    _metadata(finalizers={"type": "array", "items": {"pattern": ARGO_FINALIZER}}),
    _object(
        {
            "project": {"type": "string", "minLength": 1},
            "source": ARGO_SOURCE,
            "destination": _object(
                {"server": {"type": "string"}, "name": {"type": "string"}, "namespace": NAME}
            )
            | {"anyOf": [{"required": ["server"]}, {"required": ["name"]}]},
            "ignoreDifferences": {"type": "array", "items": ARGO_IGNORE_DIFFERENCES},
            "syncPolicy": ARGO_SYNC_POLICY,
        },
        ("project", "source", "destination"),
    ),
)

FLUX_GIT_REPOSITORY = _resource(
    "source.toolkit.fluxcd.io/v1",
    "GitRepository",
    _metadata(),
    _object(
        {
            "interval": DURATION,
            "url": {"type": "string", "pattern": r"^(http|https|ssh)://.*$"},
            "ref": _object(
                {key: {"type": "string"} for key in ("branch", "tag", "semver", "name", "commit")}
            ),
            "ignore": {"type": "string"},
            "secretRef": _object({"name": {"type": "string"}}, ("name",)),
            "timeout": DURATION,
        },
        ("interval", "url"),
    ),
)

CRDS_POLICY = {"enum": ["Skip", "Create", "CreateReplace"]}
REMEDIATION = _object({"retries": {"type": "integer"}, "remediateLastFailure": {"type": "boolean"}})
FLUX_CHART_SOURCE = _object(
    {
        "apiVersion": {"type": "string"},
        "kind": {"enum": ["HelmRepository", "GitRepository", "Bucket"]},
        "name": NAME,
        "namespace": NAME,
    },
    ("kind", "name"),
)
FLUX_CHART = _object(
    {
        "spec": _object(
            {
                "chart": {"type": "string", "minLength": 1},
                "version": {"type": "string"},
                "reconcileStrategy": {"enum": ["ChartVersion", "Revision"]},
                "interval": DURATION,
                "sourceRef": FLUX_CHART_SOURCE,
            },
            ("chart", "sourceRef"),
        )
    },
    ("spec",),
)
FLUX_DRIFT_DETECTION = _object(
    {
        "mode": {"enum": ["enabled", "warn", "disabled"]},
        "ignore": {
            "type": "array",
            "items": _object({"paths": STRINGS, "target": {"type": "object"}}, ("paths",)),
        },
    }
)
FLUX_HELM_RELEASE = _resource(
    "helm.toolkit.fluxcd.io/v2",
    "HelmRelease",
    _metadata(),
    _object(
        {
            "interval": DURATION,
            "releaseName": {"type": "string", "minLength": 1, "maxLength": 53},
            "targetNamespace": NAME,
            "storageNamespace": NAME,
            "chart": FLUX_CHART,
            "install": _object(
                {"crds": CRDS_POLICY, "createNamespace": {"type": "boolean"}, "remediation": REMEDIATION}
            ),
            "upgrade": _object({"crds": CRDS_POLICY, "remediation": REMEDIATION}),
            "driftDetection": FLUX_DRIFT_DETECTION,
            "values": {"type": "object"},
        },
        ("interval", "chart"),
    ),
)

SCHEMAS = {
    ("argoproj.io/v1alpha1", "Application"): ARGO_APPLICATION,
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): FLUX_GIT_REPOSITORY,
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): FLUX_HELM_RELEASE,
}


def load(name: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def by_name(docs: list[Doc], name: str) -> Doc:
    return next(doc for doc in docs if doc["metadata"]["name"] == name)


EXAMPLE_FILES = sorted(path.name for path in EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("name", [n for n in EXAMPLE_FILES if n != "thumbnail-workers.yaml"])
def test_gitops_objects_have_argo_and_flux_shapes(name: str) -> None:
    docs = load(name)
    assert docs
    for doc in docs:
        schema = SCHEMAS[doc["apiVersion"], doc["kind"]]
        jsonschema.validate(doc, schema)


def test_the_schemas_above_refuse_what_argo_and_flux_refuse() -> None:
    """Each schema can fail: a misspelt field, a bad enum and a missing field are caught."""
    app = by_name(load("argocd-application.yaml"), "jobqueue-operator")
    release = by_name(load("flux-helmrelease.yaml"), "jobqueue")
    wrong: list[tuple[Doc, dict[str, Any]]] = [
        (app | {"spec": app["spec"] | {"syncPolicies": {}}}, ARGO_APPLICATION),
        (
            app | {"spec": app["spec"] | {"syncPolicy": {"syncOptions": ["CreateNamespaces=true"]}}},
            ARGO_APPLICATION,
        ),
        (app | {"spec": {k: v for k, v in app["spec"].items() if k != "destination"}}, ARGO_APPLICATION),
        (release | {"spec": release["spec"] | {"driftDetection": {"mode": "on"}}}, FLUX_HELM_RELEASE),
        (release | {"spec": release["spec"] | {"install": {"crds": "Replace"}}}, FLUX_HELM_RELEASE),
    ]
    for doc, schema in wrong:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)


# --- Argo CD ------------------------------------------------------------------------------------


def test_argo_crd_application_never_deletes_the_crd() -> None:
    crds_app = by_name(load("argocd-application.yaml"), "jobqueue-crds")
    assert "finalizers" not in crds_app["metadata"]
    assert crds_app["spec"]["syncPolicy"]["automated"]["prune"] is False
    # crds/ is the chart's CRD: the same object the chart would have installed.
    path = chart.ROOT / crds_app["spec"]["source"]["path"]
    shipped = [doc for file in sorted(path.glob("*.yaml")) for doc in yaml.safe_load_all(file.read_text())]
    rendered = chart.of_kind(chart.render({}), "CustomResourceDefinition")
    assert [d["metadata"]["name"] for d in shipped] == [d["metadata"]["name"] for d in rendered]
    assert [d["spec"] for d in shipped] == [d["spec"] for d in rendered]


def test_argo_chart_application_installs_the_operator_without_the_crd() -> None:
    app = by_name(load("argocd-application.yaml"), "jobqueue-operator")
    source, destination = app["spec"]["source"], app["spec"]["destination"]
    assert (chart.ROOT / source["path"]) == chart.CHART
    values = source["helm"]["valuesObject"]
    assert values["crds"]["install"] is False
    docs = chart.render(values, release=source["helm"]["releaseName"], namespace=destination["namespace"])
    assert chart.of_kind(docs, "CustomResourceDefinition") == []
    container = chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith(values["image"]["registry"] + "/")
    assert "CreateNamespace=true" in app["spec"]["syncPolicy"]["syncOptions"]
    crds_app = by_name(load("argocd-application.yaml"), "jobqueue-crds")
    waves = [int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for a in (crds_app, app)]
    assert waves == sorted(waves) and waves[0] < waves[1]


def test_argo_workers_application_leaves_replicas_to_the_operator() -> None:
    (app,) = load("argocd-workers-application.yaml")
    (deployment,) = load("thumbnail-workers.yaml")
    assert {
        "group": "apps",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
        "jsonPointers": ["/spec/replicas"],
    } in app["spec"]["ignoreDifferences"]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert app["spec"]["destination"]["namespace"] == deployment["metadata"]["namespace"]


# --- Flux ---------------------------------------------------------------------------------------


def _kept_by_ignore(ignore: str, path: str) -> bool:
    """gitignore-style rules, last match wins (what Flux's `spec.ignore` uses), for plain paths."""
    kept = True
    for rule in (r.strip() for r in ignore.splitlines()):
        if not rule or rule.startswith("#"):
            continue
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern.lstrip("/")) or path.startswith(pattern.lstrip("/") + "/"):
            kept = negate
    return kept


def test_flux_release_installs_the_chart_from_its_git_repository() -> None:
    docs = load("flux-helmrelease.yaml")
    (repository,) = [d for d in docs if d["kind"] == "GitRepository"]
    (release,) = [d for d in docs if d["kind"] == "HelmRelease"]
    chart_spec = release["spec"]["chart"]["spec"]
    assert chart_spec["sourceRef"] == {
        "kind": "GitRepository",
        "name": repository["metadata"]["name"],
        "namespace": repository["metadata"]["namespace"],
    }
    chart_path = chart_spec["chart"].removeprefix("./")
    assert (chart.ROOT / chart_path) == chart.CHART
    ignore = repository["spec"]["ignore"]
    assert _kept_by_ignore(ignore, f"{chart_path}/Chart.yaml")
    assert not _kept_by_ignore(ignore, "worker_runtime/queue.py")
    assert chart_spec["reconcileStrategy"] == "Revision"
    spec = release["spec"]
    docs = chart.render(spec["values"], release=spec["releaseName"], namespace=spec["targetNamespace"])
    crd = next(
        d for d in chart.of_kind(docs, "CustomResourceDefinition") if d["spec"]["group"] == "jobqueue.dev"
    )
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # Flux runs Helm: kept
    assert spec["install"]["createNamespace"] is True


# --- The referenced worker Deployment -------------------------------------------------------------


def test_referenced_deployment_leaves_replicas_out() -> None:
    (deployment,) = load("thumbnail-workers.yaml")
    assert "replicas" not in deployment["spec"]
    for kube in ("1.26", kv_utils.major_minor(kv_utils.latest_version())):
        kubernetes_validate.validate(deployment, kube, strict=True)
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_referenced_deployment_matches_its_jobqueue() -> None:
    (deployment,) = load("thumbnail-workers.yaml")
    jobqueue = yaml.safe_load((chart.ROOT / "examples" / "jobqueue-deployment-ref.yaml").read_text())
    assert jobqueue["spec"]["workers"]["deploymentRef"]["name"] == deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    fields = {f"JOBQUEUE_{field}".upper() for field in settings.WorkerSettings.model_fields}
    assert sorted(name for name in env if name not in fields) == []
    assert env["JOBQUEUE_QUEUE"]["value"] == jobqueue["spec"]["queue"]["name"]
    assert int(env["JOBQUEUE_CONCURRENCY"]["value"]) == jobqueue["spec"]["workers"]["concurrency"]
    timeout = jobqueue["spec"]["jobs"]["timeoutSeconds"]
    assert float(env["JOBQUEUE_DEFAULT_TIMEOUT_SECONDS"]["value"]) == timeout
    assert (
        timeout < float(env["JOBQUEUE_GRACE_PERIOD_SECONDS"]["value"]) < pod["terminationGracePeriodSeconds"]
    )
    redis = jobqueue["spec"]["queue"]["redis"]["urlSecretRef"]
    assert env["JOBQUEUE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == redis
    # The TLS Secrets of the JobQueue, mounted where the variables point.
    tls = jobqueue["spec"]["queue"]["redis"]["tls"]
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}

    def source(variable: str) -> tuple[str, str]:
        directory, _, file = env[variable]["value"].rpartition("/")
        volume = secrets[mounted[directory]]
        return volume["secretName"], next(i["key"] for i in volume["items"] if i["path"] == file)

    assert env["JOBQUEUE_REDIS_TLS"]["value"] == "true" and tls["enabled"] is True
    assert source("JOBQUEUE_REDIS_TLS_CA_FILE") == (tls["caSecretRef"]["name"], tls["caSecretRef"]["key"])
    client = tls["clientCertSecretRef"]["name"]
    assert source("JOBQUEUE_REDIS_TLS_CERT_FILE") == (client, "tls.crt")
    assert source("JOBQUEUE_REDIS_TLS_KEY_FILE") == (client, "tls.key")


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_every_example_is_in_the_chart_page(name: str) -> None:
    assert f"examples/gitops/{name}" in (chart.ROOT / "docs" / "helm-chart.md").read_text()
