"""The shared control loop: API traffic per tick, not per object.

Case matrix: three JobQueues in one namespace scale up together -> in that window every pass came
from one LIST of Deployments and one LIST of HPAs per tick, and no Deployment was read by name;
a JobQueue deleted -> its metric series and its fleet member are gone.
"""

from __future__ import annotations

import time

import kopf
from jobqueue_operator import handlers
from jobqueue_operator.metrics import OperatorMetrics
from prometheus_client import CollectorRegistry

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import JOBQUEUES
from tests.support.wait import wait_for

NAMES = ("q1", "q2", "q3")
DEPLOYMENTS_PATH = "get /apis/apps/v1/namespaces/default/deployments"
HPAS_PATH = "get /apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"


async def test_one_listing_per_namespace_and_tick(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    for name in NAMES:
        await env.create(name)
    for name in NAMES:
        await wait_for(
            lambda n=name: env.condition("Ready", n).get("status") == "True", message=f"{name} Ready"
        )
    lists, hpa_lists = env.emulator[DEPLOYMENTS_PATH], env.emulator[HPAS_PATH]
    gets = [env.emulator[f"{DEPLOYMENTS_PATH}/{name}-worker"] for name in NAMES]
    before = (len(list(lists)), len(list(hpa_lists)), sum(len(list(g)) for g in gets))
    started = time.monotonic()

    await env.enqueue(6)  # every JobQueue serves the same queue: each scales to 3
    for name in NAMES:
        await wait_for(lambda n=name: env.replicas(f"{n}-worker") == 3, timeout=4, message=f"{name} up")
    ticks = (time.monotonic() - started) / 1.0 + 1

    listed = len(list(lists)) - before[0]
    hpas_listed = len(list(hpa_lists)) - before[1]
    read_by_name = sum(len(list(g)) for g in gets) - before[2]
    assert read_by_name == 0, "a pass read its Deployment by name"
    assert 1 <= listed <= ticks and 1 <= hpas_listed <= ticks, (listed, hpas_listed, ticks)


async def test_delete_forgets_the_member_and_its_series(operator_env: OperatorEnv) -> None:
    env = operator_env
    metrics = OperatorMetrics(CollectorRegistry())
    await env.start_operator(
        register=handlers.register, memo=kopf.Memo(server=str(env.emulator.url).rstrip("/"), metrics=metrics)
    )
    await env.create()
    labels = {"namespace": "default", "jobqueue": "q1", "queue": env.queue_name}

    def desired() -> float | None:
        return metrics.registry.get_sample_value("jobqueue_replicas_desired", labels)

    await wait_for(lambda: desired() == 0, message="the desired-replicas series")
    await env.kube.delete(JOBQUEUES, "q1")
    await wait_for(lambda: env.emulator.get_object(JOBQUEUES, "default", "q1") is None, message="gone")
    await wait_for(lambda: desired() is None, message="the series dropped")
