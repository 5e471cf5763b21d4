"""What goes wrong, and what the operator makes of it.

Case matrix: invalid spec -> SpecValid=False + Warning, no Deployment, replicas untouched, and
``jobqueue_spec_valid`` 0 until it is fixed; missing
Secret / missing key -> Degraded + Warning; unreachable Redis -> Degraded ProbeFailed, then the
fallback replicas; deploymentRef to a missing Deployment -> Degraded DeploymentNotFound, then it
scales the Deployment once it exists; an HPA on the Deployment -> Degraded ConflictingHPA and no
scaling; injected API 500 and 409 -> retried and recovered; scale-down marks pods with
pod-deletion-cost from the workers' heartbeats.
"""

from __future__ import annotations

import json
import time

import kmock
import kopf
from jobqueue_operator import handlers
from jobqueue_operator.metrics import OperatorMetrics
from prometheus_client import CollectorRegistry

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES, SECRETS, deployment_body, secret_body
from tests.support.wait import wait_for
from worker_runtime.keys import QueueKeys

PODS = kmock.resource("", "v1", "pods")
HPAS = kmock.resource("autoscaling", "v2", "horizontalpodautoscalers")


async def test_invalid_spec_is_reported_and_nothing_is_scaled(operator_env: OperatorEnv) -> None:
    env = operator_env
    metrics = OperatorMetrics(CollectorRegistry())
    memo = kopf.Memo(server=str(env.emulator.url).rstrip("/"), metrics=metrics)
    await env.start_operator(register=handlers.register, memo=memo)
    await env.create("q1", {"scaling": {"minReplicas": 4, "maxReplicas": 2}})
    cond = await wait_for(lambda: env.condition("SpecValid"), message="SpecValid")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert "spec.scaling.minReplicas" in cond["message"]
    await wait_for(lambda: env.events("InvalidSpec", "Warning"), message="a Warning Event")
    assert env.deployment() is None

    def spec_valid() -> float | None:
        return metrics.registry.get_sample_value(
            "jobqueue_spec_valid", {"namespace": "default", "jobqueue": "q1"}
        )

    await wait_for(lambda: spec_valid() == 0, message="a series that says it is invalid, for alerts")
    await env.kube.patch(JOBQUEUES, "q1", {"spec": {"scaling": {"minReplicas": 1}}})
    await wait_for(lambda: env.replicas() == 1, message="fixed spec -> Deployment at minReplicas")
    await wait_for(lambda: env.condition("SpecValid").get("status") == "True", message="SpecValid again")
    # The series follows the status write once the PATCH has returned to the operator.
    await wait_for(lambda: spec_valid() == 1, message="the series says valid again")


async def test_missing_secret_and_key_are_reported(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"queue": {"redis": {"urlSecretRef": {"name": "absent"}}}})
    await env.kube.create(SECRETS, secret_body("nokey", {"other": "x"}))
    await env.create("q2", {"queue": {"redis": {"urlSecretRef": {"name": "nokey"}}}})
    for name, reason in (("q1", "SecretNotFound"), ("q2", "SecretKeyNotFound")):
        cond = await wait_for(
            lambda n=name, reason=reason: (
                env.condition("Degraded", n).get("reason") == reason and env.condition("Degraded", n)
            ),
            message=reason,
        )
        assert cond["status"] == "True" and "spec.queue.redis.urlSecretRef" in cond["message"]
        await wait_for(lambda r=reason: env.events(r, "Warning"), message=f"{reason} Event")
    assert env.condition("Ready", "q1")["status"] == "False"


async def test_unreachable_redis_degrades_then_falls_back(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.kube.create(SECRETS, secret_body("down", {"url": "redis://127.0.0.1:9/0"}))
    await env.start()
    spec = {
        "queue": {"redis": {"urlSecretRef": {"name": "down"}}},
        "scaling": {"fallback": {"failureThreshold": 2, "replicas": 2}},
    }
    await env.create("q1", spec)
    cond = await wait_for(
        lambda: env.condition("Degraded").get("reason") == "ProbeFailed" and env.condition("Degraded"),
        timeout=6,
        message="ProbeFailed",
    )
    assert cond["status"] == "True"
    await wait_for(lambda: env.events("ProbeFailed", "Warning"), message="ProbeFailed Event")
    await wait_for(lambda: env.replicas() == 2, timeout=8, message="fallback.replicas after 2 failures")
    await env.kube.patch(SECRETS, "down", {"stringData": {"url": env.redis_url}, "data": None})
    await wait_for(lambda: env.condition("Degraded").get("status") == "False", timeout=8, message="recovered")


async def test_deployment_ref_missing_then_scaled(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"workers": {"template": None, "deploymentRef": {"name": "mine"}}})
    cond = await wait_for(lambda: env.condition("Degraded"), message="Degraded")
    assert cond["reason"] == "DeploymentNotFound" and "mine" in cond["message"]
    await wait_for(lambda: env.events("DeploymentNotFound", "Warning"), message="Warning Event")
    await env.kube.create(DEPLOYMENTS, deployment_body("mine", replicas=0))
    await env.enqueue(4)
    await wait_for(lambda: env.replicas("mine") == 2, timeout=4, message="the referenced Deployment scaled")
    assert env.deployment("q1-worker") is None


async def test_conflicting_hpa_is_reported_not_fought(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await wait_for(env.deployment, message="the Deployment")
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "cpu"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "q1-worker"},
            "minReplicas": 1,
            "maxReplicas": 3,
        },
    }
    await env.kube.create(HPAS, hpa)
    await env.enqueue(6)
    cond = await wait_for(
        lambda: env.condition("Degraded").get("reason") == "ConflictingHPA" and env.condition("Degraded"),
        message="ConflictingHPA",
    )
    assert "cpu" in cond["message"]
    await wait_for(lambda: env.status().get("waiting") == 6, message="still probed")
    assert env.replicas() == 0
    await env.kube.delete(HPAS, "cpu")
    await wait_for(lambda: env.replicas() == 3, timeout=4, message="scales once the HPA is gone")


async def test_api_errors_are_retried(operator_env: OperatorEnv) -> None:
    env = operator_env
    emulator = env.emulator
    create_500 = (
        emulator["post /apis/apps/v1/namespaces/default/deployments"][:1] << 500 << {"message": "boom"}
    )
    scale_409 = (
        emulator["patch /apis/apps/v1/namespaces/default/deployments/q1-worker/scale"][:1]
        << 409
        << {"message": "conflict"}
    )
    await env.start()
    await env.create()
    await wait_for(env.deployment, timeout=6, message="the Deployment after a 500")
    await env.enqueue(4)
    await wait_for(lambda: env.status().get("desiredReplicas") == 2, timeout=8, message="scaled after a 409")
    assert env.replicas() == 2
    assert len(list(create_500)) == 1 and len(list(scale_409)) == 1


async def test_scale_down_marks_idle_pods_first(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"scaling": {"minReplicas": 0}})
    await env.enqueue(6)
    await wait_for(lambda: env.replicas() == 3, timeout=3, message="up to 3")
    labels = env.deployment()["spec"]["selector"]["matchLabels"]  # type: ignore[index]
    for pod in ("busy", "idle", "other"):
        meta = {"name": f"q1-worker-{pod}", "labels": labels if pod != "other" else {"app": "x"}}
        await env.kube.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {"containers": [{"name": "w", "image": "x"}]},
            },
        )
    # Heartbeats as the runtime writes them: a busy worker on one pod, an idle one on another.
    keys = QueueKeys.for_queue(env.queue_name)
    await env.drain()
    await write_heartbeat(env, keys, "w1", "q1-worker-busy", 2)
    await write_heartbeat(env, keys, "w2", "q1-worker-idle", 0)

    def cost(pod: str) -> str | None:
        body = env.emulator.get_object(PODS, "default", pod) or {}
        return (body.get("metadata", {}).get("annotations") or {}).get(
            "controller.kubernetes.io/pod-deletion-cost"
        )

    # The pods are annotated by concurrent PATCHes: wait for both, then check nothing else changed.
    await wait_for(
        lambda: (cost("q1-worker-busy"), cost("q1-worker-idle")) == ("2", "0"),
        timeout=6,
        message="busy pod costs 2, idle pod 0",
    )
    assert cost("q1-worker-other") is None


async def write_heartbeat(env: OperatorEnv, keys: QueueKeys, worker: str, pod: str, inflight: int) -> None:
    seen_ms = int(time.time() * 1000)
    beat = {"pod": pod, "inflight": inflight, "concurrency": 2, "seen_ms": seen_ms}
    await env.redis.hset(keys.workers, worker, json.dumps(beat))
