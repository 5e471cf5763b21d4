"""The shared control loop: API traffic per tick, not per object.

Case matrix: three JobQueues in one namespace scale up together -> in that window every pass came
from one LIST of Deployments and one LIST of HPAs per tick, and no Deployment was read by name;
a JobQueue deleted -> its metric series and its served entry are gone; tunables put in the memo
reach kopf's settings, the loop, the prober, the URL cache and the API client.
"""

from __future__ import annotations

import time

import kopf
from jobqueue_operator import handlers, tunables
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

    for name in NAMES:
        await env.enqueue(6, name)  # each scales to 3
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


async def test_tunables_from_the_memo_reach_kopf_and_the_loop(operator_env: OperatorEnv) -> None:
    env = operator_env
    tuned = tunables.Tunables(
        loop=tunables.LoopTunables(tick_seconds=0.5, pass_concurrency=4),
        api=tunables.ApiTunables(timeout_seconds=3.0),
        secrets=tunables.SecretTunables(url_cache_seconds=0),
        kopf=tunables.KopfTunables(api_error_backoffs=(0.5, 1.0), watch_reconnect_seconds=0.25),
    )
    memo = kopf.Memo(server=str(env.emulator.url).rstrip("/"), tunables=tuned)
    operator = await env.start_operator(register=handlers.register, memo=memo)
    await env.create()
    await wait_for(lambda: env.condition("Ready").get("status") == "True", message="served")
    assert list(operator.settings.networking.error_backoffs) == [0.5, 1.0]
    assert operator.settings.watching.reconnect_backoff == 0.25
    ctx = handlers.context_of(memo)
    assert ctx.settings is tuned and ctx.loop is not None
    assert ctx.loop.tick_seconds == 0.5 and ctx.loop.secret_urls.ttl == 0
    assert ctx.loop.prober.settings is tuned.probe
    assert ctx.api()._session.timeout.total == 3.0
