"""Pure builders: the worker Deployment, conditions and the status patch.

Case matrix: owner reference and labels; env from the spec, the Secret and the downward API (the
template's own env kept, ours win on a clash); secure defaults added, or kept where the template
sets them; metrics port added once; grace period from the spec or the job timeout; drift patches
never touch replicas; conditions keep lastTransitionTime unless the status changes; status patch
holds only changed keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import builders, spec
from jobqueue_operator.status import ConditionType

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
    d = builders.worker_deployment(jobqueue())
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
        for e in container(builders.worker_deployment(jobqueue(template=template, concurrency=7)))["env"]
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
    d = builders.worker_deployment(jobqueue(template=template))
    assert "env" not in container(d, 0) and container(d, 1)["env"]
    assert all(c["securityContext"]["runAsNonRoot"] for c in d["spec"]["template"]["spec"]["containers"])


def test_secure_defaults_added_or_kept() -> None:
    sc = container(builders.worker_deployment(jobqueue()))["securityContext"]
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
    c = container(builders.worker_deployment(jobqueue(template=template)))
    assert (
        c["securityContext"]["readOnlyRootFilesystem"] is False and c["securityContext"]["runAsUser"] == 1000
    )
    assert c["securityContext"]["runAsNonRoot"] is True
    assert "volumeMounts" not in c  # a writable root needs no /tmp volume


def test_read_only_root_gets_a_tmp_volume_and_metrics_port_once() -> None:
    d = builders.worker_deployment(jobqueue(metricsPort=9200))
    c = container(d)
    assert {"name": builders.TMP_VOLUME, "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": builders.TMP_VOLUME, "emptyDir": {}} in d["spec"]["template"]["spec"]["volumes"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    template = {
        "spec": {
            "containers": [
                {"name": "worker", "image": "w", "ports": [{"name": "metrics", "containerPort": 9100}]}
            ]
        }
    }
    assert container(builders.worker_deployment(jobqueue(template=template)))["ports"] == [
        {"name": "metrics", "containerPort": 9100}
    ]


def test_grace_period_from_spec_or_job_timeout() -> None:
    assert (
        builders.worker_deployment(jobqueue())["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        == 90
    )
    explicit = builders.worker_deployment(jobqueue(terminationGracePeriodSeconds=15))
    assert explicit["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15


def test_no_containers_is_a_spec_error_and_deployment_ref_has_no_owned_deployment() -> None:
    with pytest.raises(spec.SpecError) as exc:
        builders.worker_deployment(jobqueue(template={"spec": {}}))
    assert exc.value.path == "spec.workers.template.spec.containers"
    assert (
        builders.worker_deployment_name(
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
    wanted = builders.worker_deployment(jobqueue())
    existing = {**wanted, "spec": {**wanted["spec"], "replicas": 7}}
    assert builders.deployment_drift(existing, wanted) is None
    changed = builders.worker_deployment(jobqueue(concurrency=3))
    patch = builders.deployment_drift(existing, changed)
    assert patch is not None and "replicas" not in patch["spec"] and patch["spec"]["template"]


def test_conditions_keep_transition_time_and_status_patch_is_minimal() -> None:
    first = builders.merge_conditions([], [builders.condition(ConditionType.READY, True, "Scaled")], 1000.0)
    again = builders.merge_conditions(
        first, [builders.condition(ConditionType.READY, True, "Scaled")], 2000.0
    )
    assert again == first and first[0].last_transition_time == "1970-01-01T00:16:40Z"
    flipped = builders.merge_conditions(
        first, [builders.condition(ConditionType.READY, False, "ProbeFailed")], 2000.0
    )
    assert flipped[0].last_transition_time == "1970-01-01T00:33:20Z"
    assert builders.status_patch({"waiting": 1, "replicas": 2}, {"waiting": 1, "replicas": 3}) == {
        "replicas": 3
    }


def test_paused_condition_names_its_source() -> None:
    assert (
        builders.paused_condition({"metadata": {"annotations": {"jobqueue.dev/paused": "true"}}}).reason
        == "PausedByAnnotation"
    )
    assert builders.paused_condition({"spec": {"scaling": {"paused": True}}}).reason == "PausedBySpec"
    assert builders.paused_condition({}).status == "False"
