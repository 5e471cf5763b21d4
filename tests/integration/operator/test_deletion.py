"""Deleting a JobQueue never waits for the operator.

Case matrix: created while the operator runs, deleted while it is down (as after ``helm uninstall``
with ``crds.keep``) -> ``kubectl delete --wait`` returns and the object is gone; objects that still
carry the finalizer earlier versions added -> the next operator removes it from a live JobQueue
(which it goes on serving) and lets a JobQueue already being deleted go.
"""

from __future__ import annotations

import asyncio

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import JOBQUEUES
from tests.support.kube_fixtures import Kubectl
from tests.support.wait import wait_for

OLD_FINALIZER = "jobqueue.dev/finalizer"


def finalizers(env: OperatorEnv, name: str) -> list[str] | None:
    body = env.emulator.get_object(JOBQUEUES, "default", name)
    return None if body is None else list(body["metadata"].get("finalizers") or [])


async def test_delete_while_the_operator_is_down(operator_env: OperatorEnv, kubectl: Kubectl) -> None:
    env = operator_env
    operator = await env.start()
    await env.create()
    await wait_for(lambda: env.condition("Ready").get("status") == "True", message="served")
    await wait_for(env.deployment, message="the worker Deployment")
    assert finalizers(env, "q1") == []
    await asyncio.to_thread(operator.stop)

    await asyncio.to_thread(kubectl, "delete", "jq", "q1", "--wait=true", "--timeout=10s")
    assert await env.kube.get(JOBQUEUES, "q1") is None
    missing = await asyncio.to_thread(kubectl, "get", "jq", "q1", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr, missing.stderr


async def test_the_old_finalizer_is_removed_once_the_operator_runs(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.create("live", finalizers=[OLD_FINALIZER])
    await env.create("leaving", finalizers=[OLD_FINALIZER])
    await env.kube.delete(JOBQUEUES, "leaving")
    leaving = await env.kube.get(JOBQUEUES, "leaving")
    assert leaving is not None and leaving["metadata"].get("deletionTimestamp"), "stuck in Terminating"

    await env.start()
    await wait_for(lambda: finalizers(env, "leaving") is None, message="the terminating JobQueue is gone")
    await wait_for(lambda: finalizers(env, "live") == [], message="the old finalizer removed")
    await wait_for(lambda: env.condition("Ready", "live").get("status") == "True", message="still served")
    await env.enqueue(4, "live")
    await wait_for(lambda: env.replicas("live-worker") == 2, timeout=4, message="still scaled")
    assert finalizers(env, "live") == []
