"""The operator (real kopf in a thread) against the emulated API server and a real redis-server.

Case matrix: create -> owned Deployment (owner reference, env, secure defaults) and status;
jobs -> replicas rise within one poll; drained -> down after stabilization, to zero after cooldown;
paused by spec and by annotation -> untouched; maxReplicas lowered -> clamped; delete -> gone, and no
finalizer was ever added; operator restart -> status.policy carried over.
"""

from __future__ import annotations

import asyncio

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import JOBQUEUES
from tests.support.wait import wait_for


async def test_create_builds_an_owned_deployment_and_status(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    created = await env.create()
    deployment = await wait_for(env.deployment, message="the worker Deployment")
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == created["metadata"]["uid"] and owner["kind"] == "JobQueue" and owner["controller"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env_vars = {item["name"]: item for item in container["env"]}
    assert env_vars["JOBQUEUE_QUEUE"]["value"] == env.queue_name
    assert env_vars["JOBQUEUE_REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert env_vars["JOBQUEUE_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 50
    assert deployment["spec"]["replicas"] == 0
    await wait_for(lambda: env.condition("Ready").get("status") == "True", message="Ready")
    status = env.status()
    assert status["desiredReplicas"] == 0 and status["waiting"] == 0 and status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} == {
        "Ready", "Active", "Degraded", "Paused", "SpecValid", "FlowControlled"
    }  # fmt: skip
    assert "finalizers" not in (await env.kube.get(JOBQUEUES, "q1"))["metadata"]  # type: ignore[index]
    await wait_for(lambda: env.events("WorkersCreated"), message="the WorkersCreated Event")


async def test_jobs_scale_up_then_down_and_to_zero(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await wait_for(lambda: env.replicas() == 0, message="the Deployment at zero")
    await env.enqueue(6)
    await wait_for(lambda: env.replicas() == 3, timeout=3, message="up to 6 jobs / 2 per replica")
    await wait_for(lambda: env.status().get("desiredReplicas") == 3, message="status after the scale-up")
    assert env.status()["waiting"] == 6
    scaled = await wait_for(lambda: env.events("ScaledUp"), message="the ScaledUp Event")
    # An Event names the decision kind first, as the scale-events metric's reason label does.
    assert scaled[0]["message"].startswith("activated: activated 0 -> "), scaled[0]["message"]
    await env.drain()
    await wait_for(lambda: env.replicas() == 0, timeout=8, message="down to zero after window and cooldown")
    status = await wait_for(lambda: env.status() if env.status().get("desiredReplicas") == 0 else None)
    assert status["waiting"] == 0 and status["lastScaleTime"] and status["replicas"] == 0
    assert env.condition("Active")["status"] == "False"


async def test_delete_while_running(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await wait_for(lambda: env.condition("Ready"), message="first pass")
    await env.kube.delete(JOBQUEUES, "q1")
    await wait_for(lambda: env.emulator.get_object(JOBQUEUES, "default", "q1") is None, message="gone")


async def test_paused_by_spec_or_annotation_leaves_replicas_alone(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"scaling": {"paused": True}})
    await env.create("q2", annotations={"jobqueue.dev/paused": "true"})
    await env.enqueue(6)
    await env.enqueue(6, "q2")
    for name, reason in (("q1", "PausedBySpec"), ("q2", "PausedByAnnotation")):
        paused = await wait_for(lambda n=name: env.condition("Paused", n), message=f"{name} Paused")
        assert paused["status"] == "True" and paused["reason"] == reason
        await wait_for(lambda n=name: env.status(n).get("waiting") == 6, message=f"{name} still probed")
        assert env.replicas(f"{name}-worker") == 0 and env.status(name)["lastDecision"] == "paused: keeping 0"
    await env.kube.patch(JOBQUEUES, "q2", {"metadata": {"annotations": {"jobqueue.dev/paused": None}}})
    await wait_for(lambda: env.replicas("q2-worker") == 3, timeout=3, message="resumed and scaled")
    assert env.replicas("q1-worker") == 0


async def test_spec_change_is_picked_up(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await env.enqueue(8)
    await wait_for(lambda: env.replicas() == 4, timeout=3, message="up to 4")
    await env.kube.patch(
        JOBQUEUES, "q1", {"spec": {"scaling": {"maxReplicas": 2}, "workers": {"concurrency": 3}}}
    )
    await wait_for(lambda: env.replicas() == 2, timeout=3, message="clamped to the new maxReplicas")
    await wait_for(lambda: env.status().get("observedGeneration") == 2, message="generation 2 observed")

    def concurrency() -> str | None:
        container = env.deployment()["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
        return next(e.get("value") for e in container["env"] if e["name"] == "JOBQUEUE_CONCURRENCY")

    await wait_for(lambda: concurrency() == "3", message="the template follows the spec")
    assert env.replicas() == 2


async def test_restart_keeps_policy_state(operator_env: OperatorEnv) -> None:
    env = operator_env
    first = await env.start()
    await env.create("q1", {"scaling": {"scaleDown": {"stabilizationWindowSeconds": 600}}})
    await env.enqueue(6)
    await wait_for(lambda: env.status().get("desiredReplicas") == 3, timeout=3, message="scaled up")
    policy = env.status()["policy"]
    assert policy["scaleEvents"] and policy["enqueuedTotal"] == 6
    await asyncio.to_thread(first.stop)

    await env.drain()
    await env.start()
    # A fresh policy would shrink at once; the restored window (600 s) holds the peak need of 3.
    await wait_for(lambda: env.status().get("waiting") == 0, timeout=3, message="the new operator polled")
    status = env.status()
    assert env.replicas() == 3 and status["desiredReplicas"] == 3, status["lastDecision"]
    assert status["policy"]["scaleEvents"][0] == policy["scaleEvents"][0]
