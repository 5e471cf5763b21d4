"""The worker Deployment builder (pure).

Case matrix: owner reference and labels; env from the spec, the Secret and the downward API (the
template's own env kept, ours win on a clash); secure defaults added, or kept where the template
sets them; metrics port added once; grace period from the spec or the job timeout; drift patches
never touch replicas, and what the API server defaults is no drift; names and label values fit what
the API server accepts whatever the JobQueue's name (up to 253 characters).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from jobqueue_operator import spec, worker_deployment

UID = "1234-abcd"


def jobqueue(**workers: Any) -> spec.JobQueue:
    template = workers.pop(
        "template",
        {
            "metadata": {"labels": {"team": "mail"}},
            "spec": {"containers": [{"name": "worker", "image": "w:1"}]},
        },
    )
    body = {
        "metadata": {"name": "emails", "namespace": "shop", "uid": UID, "generation": 3},
        "spec": {
            "queue": {"name": "outbound", "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"template": template, **workers},
            "scaling": {"minReplicas": 1, "targets": {"backlogPerReplica": 10}},
            "jobs": {"timeoutSeconds": 60},
        },
    }
    return spec.parse_jobqueue(body)


def container(deployment: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][index]  # type: ignore[no-any-return]


def test_deployment_is_owned_labelled_and_selects_its_pods() -> None:
    d = worker_deployment.worker_deployment(jobqueue())
    assert d["metadata"]["name"] == "emails-worker" and d["metadata"]["namespace"] == "shop"
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "name": "emails",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "mail" and labels["app.kubernetes.io/instance"] == "emails"
    assert labels["app.kubernetes.io/managed-by"] == "jobqueue-operator"
    assert labels["app.kubernetes.io/component"] == "worker" and labels["app.kubernetes.io/name"]
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert d["spec"]["replicas"] == 1


def test_env_comes_from_spec_secret_and_downward_api() -> None:
    template = {
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "w",
                    "env": [
                        {"name": "LOG_LEVEL", "value": "debug"},
                        {"name": "JOBQUEUE_CONCURRENCY", "value": "99"},
                    ],
                }
            ]
        }
    }
    env = {
        e["name"]: e
        for e in container(worker_deployment.worker_deployment(jobqueue(template=template, concurrency=7)))[
            "env"
        ]
    }
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert env["JOBQUEUE_CONCURRENCY"]["value"] == "7"
    assert env["JOBQUEUE_QUEUE"]["value"] == "outbound"
    assert env["JOBQUEUE_REDIS_URL"] == {
        "name": "JOBQUEUE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
    }
    assert env["JOBQUEUE_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_env_goes_to_the_worker_container_and_defaults_to_every_container() -> None:
    template = {"spec": {"containers": [{"name": "sidecar", "image": "s"}, {"name": "worker", "image": "w"}]}}
    d = worker_deployment.worker_deployment(jobqueue(template=template))
    assert "env" not in container(d, 0) and container(d, 1)["env"]
    assert all(c["securityContext"]["runAsNonRoot"] for c in d["spec"]["template"]["spec"]["containers"])


def test_secure_defaults_added_or_kept() -> None:
    sc = container(worker_deployment.worker_deployment(jobqueue()))["securityContext"]
    assert sc == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    template = {
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "w",
                    "securityContext": {"readOnlyRootFilesystem": False, "runAsUser": 1000},
                }
            ]
        }
    }
    c = container(worker_deployment.worker_deployment(jobqueue(template=template)))
    assert (
        c["securityContext"]["readOnlyRootFilesystem"] is False and c["securityContext"]["runAsUser"] == 1000
    )
    assert c["securityContext"]["runAsNonRoot"] is True
    assert "volumeMounts" not in c  # a writable root needs no /tmp volume


def test_read_only_root_gets_a_tmp_volume_and_metrics_port_once() -> None:
    d = worker_deployment.worker_deployment(jobqueue(metricsPort=9200))
    c = container(d)
    assert {"name": worker_deployment.TMP_VOLUME, "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": worker_deployment.TMP_VOLUME, "emptyDir": {}} in d["spec"]["template"]["spec"]["volumes"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    template = {
        "spec": {
            "containers": [
                {"name": "worker", "image": "w", "ports": [{"name": "metrics", "containerPort": 9100}]}
            ]
        }
    }
    assert container(worker_deployment.worker_deployment(jobqueue(template=template)))["ports"] == [
        {"name": "metrics", "containerPort": 9100}
    ]


def test_grace_period_from_spec_or_job_timeout() -> None:
    assert (
        worker_deployment.worker_deployment(jobqueue())["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        == 90
    )
    explicit = worker_deployment.worker_deployment(jobqueue(terminationGracePeriodSeconds=15))
    assert explicit["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15


def test_no_containers_is_a_spec_error_and_deployment_ref_has_no_owned_deployment() -> None:
    with pytest.raises(spec.SpecError) as exc:
        worker_deployment.worker_deployment(jobqueue(template={"spec": {}}))
    assert exc.value.path == "spec.workers.template.spec.containers"
    assert (
        worker_deployment.worker_deployment_name(
            spec.parse_jobqueue(
                {**_raw(), "spec": {**_raw()["spec"], "workers": {"deploymentRef": {"name": "mine"}}}}
            )
        )
        == "mine"
    )


def _raw() -> dict[str, Any]:
    return {
        "metadata": {"name": "emails", "uid": UID},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "r", "key": "url"}}},
            "workers": {"template": {"spec": {"containers": [{"name": "w", "image": "w"}]}}},
            "scaling": {"targets": {"backlogPerReplica": 1}},
        },
    }


def test_drift_patches_template_never_replicas() -> None:
    wanted = worker_deployment.worker_deployment(jobqueue())
    existing = {**wanted, "spec": {**wanted["spec"], "replicas": 7}}
    assert worker_deployment.deployment_drift(existing, wanted) is None
    changed = worker_deployment.worker_deployment(jobqueue(concurrency=3))
    patch = worker_deployment.deployment_drift(existing, changed)
    assert patch is not None
    paths = {op["path"]: op for op in patch}
    assert "/spec/replicas" not in paths and paths["/spec/template"]["value"] == changed["spec"]["template"]
    assert (
        paths["/metadata/annotations"]["value"][worker_deployment.TEMPLATE_HASH]
        != (existing["metadata"]["annotations"][worker_deployment.TEMPLATE_HASH])
    )


def test_fields_the_api_server_defaults_are_no_drift() -> None:
    """A real API server fills the template (imagePullPolicy, dnsPolicy...): not a reason to patch."""
    wanted = worker_deployment.worker_deployment(jobqueue())
    served = copy.deepcopy(wanted)
    served["spec"]["template"]["spec"] |= {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}
    served["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    served["metadata"]["labels"]["team"] = "payments"  # labels of its own stay, and are no drift
    assert worker_deployment.deployment_drift(served, wanted) is None


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _long_name(length: int, fill: str = "x") -> str:
    """A valid metadata.name (DNS subdomain) of ``length`` characters, with dots and dashes in it."""
    parts, size = [], 0
    while size < length:
        part = (fill + "-a." + fill * 40)[: min(50, length - size)].strip(".-") or fill
        parts.append(part)
        size = len(".".join(parts))
    return ".".join(parts)[:length].rstrip(".-")


@pytest.mark.parametrize("length", [20, 63, 64, 100, 200, 253])
def test_names_and_label_values_fit_whatever_the_jobqueue_name(length: int) -> None:
    name = _long_name(length)
    jq = jobqueue()
    jq = jq.model_copy(update={"metadata": jq.metadata.model_copy(update={"name": name})})
    d = worker_deployment.worker_deployment(jq)
    labels = {**d["metadata"]["labels"], **d["spec"]["template"]["metadata"]["labels"]}
    for key, value in labels.items():
        assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)
    deployment_name = d["metadata"]["name"]
    assert len(deployment_name) <= worker_deployment.DEPLOYMENT_NAME_LIMIT and SUBDOMAIN.match(
        deployment_name
    )
    assert deployment_name.endswith("-worker")
    selector = d["spec"]["selector"]["matchLabels"]
    assert all(d["spec"]["template"]["metadata"]["labels"][k] == v for k, v in selector.items())
    if len(name) <= 63:
        assert labels[worker_deployment.JOBQUEUE_LABEL] == name  # short names stay as they are


def test_two_long_names_with_one_prefix_get_distinct_labels() -> None:
    prefix = "payments-" * 8
    first, second = (worker_deployment.label_value(prefix + tail) for tail in ("emails", "invoices"))
    assert first != second and first[:40] == second[:40] and len(first) == len(second) == 63
