"""The operator and flow control (real kopf, the emulated API server, a real redis-server and, for
the rate limit, a real worker): spec.flow written to Redis, replicas held at what a pause, a cap
or a rate limit lets work, with the decision kind, the reason and the FlowControlled condition."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from tests.integration.operator.conftest import OperatorEnv
from tests.support.kube_client import JOBQUEUES
from tests.support.wait import wait_for
from worker_runtime import App, JobContext, JobSpec, Queue, Worker, WorkerSettings
from worker_runtime.commands import QueueCommands
from worker_runtime.flow import Breaker, FlowConfig, RateLimit


async def _flow(redis: aioredis.Redis, queue: str) -> FlowConfig:
    q = Queue(queue, redis)
    try:
        return await q.flow()
    finally:
        await q.aclose()


def _flow_is(env: OperatorEnv, wanted: FlowConfig) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await _flow(env.redis, env.queue()) == wanted

    return check


async def test_paused_claims_hold_the_replicas_and_resume_scales(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    await env.create("q1", {"flow": {"claimsPaused": True}})
    await env.enqueue(6)
    # The operator writes the pause to Redis, where the workers' claims read it.
    await wait_for(_flow_is(env, FlowConfig(paused=True)), message="the pause written to Redis")
    flow = await wait_for(lambda: env.condition("FlowControlled"), message="FlowControlled")
    assert (flow["status"], flow["reason"]) == ("True", "ClaimsPaused")
    await wait_for(lambda: env.status().get("waiting") == 6, message="probed while paused")
    assert env.replicas() == 0 and env.status()["desiredReplicas"] == 0
    assert env.status()["lastDecision"].startswith("keeping 0, claims paused (whilePaused Keep)")
    await env.kube.patch(JOBQUEUES, "q1", {"spec": {"flow": {"claimsPaused": False}}})
    await wait_for(lambda: env.replicas() == 3, timeout=5, message="resumed: 6 jobs / 2 per replica")
    assert not (await _flow(env.redis, env.queue())).paused
    resumed = await wait_for(
        lambda: (
            env.condition("FlowControlled") if env.condition("FlowControlled")["status"] == "False" else None
        ),
        message="FlowControlled=False after the resume",
    )
    assert resumed["reason"] == "NotLimited"


async def test_a_running_cap_set_through_the_api_bounds_the_replicas(operator_env: OperatorEnv) -> None:
    env = operator_env
    await env.start()
    queue = Queue(env.queue(), env.redis)
    await queue.set_max_running(3)  # not in the spec: the operator reads it and leaves it alone
    await queue.aclose()
    await env.enqueue(20)  # 20 jobs / 2 per replica would be 5 (maxReplicas)
    await env.create("q1", {"workers": {"concurrency": 2}})  # its first pass sees all 20
    await wait_for(lambda: env.replicas() == 2, timeout=5, message="held at ceil(3 / 2) pods")
    status = await wait_for(lambda: env.status() if env.status().get("desiredReplicas") == 2 else None)
    assert status["lastDecision"].startswith("0 -> 2, maxRunning 3 / concurrency 2 = 2 pods"), status
    flow = env.condition("FlowControlled")
    assert (flow["status"], flow["reason"]) == ("True", "RunningCapped") and "maxRunning 3" in flow["message"]
    scaled = await wait_for(lambda: env.events("ScaledUp"), message="the ScaledUp Event")
    assert scaled[0]["message"].startswith("capped: "), scaled[0]["message"]
    assert (await _flow(env.redis, env.queue())).max_running == 3


async def test_a_rate_limited_queue_gets_no_pod_the_limit_would_leave_idle(operator_env: OperatorEnv) -> None:
    env = operator_env
    app = App(env.queue())

    @app.job()
    async def work(ctx: JobContext, payload: object) -> None:
        await asyncio.sleep(1.5)

    await env.start()
    # 4 starts a second of 1.5 s jobs keep about 6 slots busy: with one slot per pod, about 6 pods
    # (more while the measured service time settles), where the backlog asks for maxReplicas 50.
    spec = {"flow": {"rateLimit": {"jobs": 4, "seconds": 1}}, "scaling": {"maxReplicas": 50}}
    await env.create("q1", spec)
    await env.enqueue(200)
    limited = FlowConfig(rate_limit=RateLimit(4, 1.0))
    await wait_for(_flow_is(env, limited), message="the rate limit written to Redis")
    settings = WorkerSettings(queue=env.queue(), concurrency=8, metrics_port=0, heartbeat_seconds=0.2)
    worker = Worker(app, env.redis, settings)
    running = asyncio.create_task(worker.run())
    try:
        seen: list[str] = []

        def bounded() -> dict[str, object] | None:
            seen.append(env.status().get("lastDecision", ""))
            return env.status() if "rate limit 4/1s x service time" in seen[-1] else None

        try:
            status = await wait_for(bounded, timeout=20, message="the replicas bounded by the rate limit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the last decisions: {seen[-3:]}") from None
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    bound = int(re.search(r"concurrency 1 = (\d+) pods", status["lastDecision"]).group(1))  # type: ignore[union-attr]
    assert 1 <= bound < 50 and status["desiredReplicas"] == bound, status["lastDecision"]
    flow = env.condition("FlowControlled")
    assert (flow["status"], flow["reason"]) == ("True", "RateLimited"), flow
    # The condition of the same pass or a later one (the bound moves as the service time settles).
    assert re.search(
        r"^rate limit 4/1s \(\d+ started in this window\); replicas held at \d+$", flow["message"]
    ), flow


async def test_at_zero_the_operator_fires_the_due_tick_and_the_job_wakes_the_fleet(
    operator_env: OperatorEnv,
) -> None:
    env = operator_env
    await env.start()
    await env.create()
    await wait_for(lambda: env.condition("Ready"), message="first pass")
    assert env.replicas() == 0
    queue = Queue(env.queue(), env.redis)
    await queue.add_schedule("hourly", "work", every=3600 * 24, payload={"n": 1})
    # Make its tick due now: no worker is up to fire it, so only the operator can.
    keys = QueueCommands(env.queue()).keys
    seconds, _ = await env.redis.time()  # type: ignore[misc]
    tick = (int(seconds) - 1) * 1000
    await env.redis.zadd(keys.schedule_next, {"hourly": tick})
    await wait_for(
        lambda: env.redis.exists(keys.job(f"hourly:{tick}")), message="the operator fired the tick"
    )
    await wait_for(lambda: env.replicas() == 1, timeout=5, message="the scheduled job woke the fleet")
    (info,) = await queue.schedules()
    assert info.next_ms is not None and info.next_ms > tick
    assert (await queue.stats()).enqueued_total == 1
    await queue.aclose()


async def test_a_breaker_opening_and_closing_is_posted_and_its_parked_jobs_scale_nothing(
    operator_env: OperatorEnv,
) -> None:
    env = operator_env
    app = App(env.queue())
    downstream_up = asyncio.Event()

    @app.job(attempts=1)
    async def work(ctx: JobContext, payload: object) -> None:
        if not downstream_up.is_set():
            raise RuntimeError("503 from the downstream")

    await env.start()
    await env.create("q1", {"flow": {"circuitBreaker": {"failures": 2, "cooloffSeconds": 2}}})
    await wait_for(_flow_is(env, FlowConfig(breaker=Breaker(2, 2.0))), message="the breaker written to Redis")
    await env.enqueue(10)
    worker = Worker(app, env.redis, WorkerSettings(queue=env.queue(), concurrency=1, metrics_port=0))
    running = asyncio.create_task(worker.run())
    try:
        opened = await wait_for(lambda: env.events("BreakerOpened", "Warning"), message="BreakerOpened")
        assert "circuit breaker of job work opened" in opened[0]["message"]
        # Its 8 parked jobs wait in delayed: they ask for no pod (the worker's heartbeat keeps 1).
        status = await wait_for(
            lambda: env.status() if env.status().get("delayed", 0) >= 7 else None, message="parked jobs"
        )
        assert status["waiting"] <= 1, status
        downstream_up.set()
        closed = await wait_for(lambda: env.events("BreakerClosed"), timeout=15, message="BreakerClosed")
        assert "circuit breaker of job work closed" in closed[0]["message"]
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def test_a_backlog_held_by_a_group_limit_scales_nothing(operator_env: OperatorEnv) -> None:
    env = operator_env
    app = App(env.queue())

    @app.job()
    async def work(ctx: JobContext, payload: object) -> None:
        await asyncio.sleep(0.1)

    await env.start()
    # Group A may start 2 jobs a minute: its other 18 wait for the next minute, however many pods run.
    await env.create("q1", {"flow": {"groupRateLimit": {"jobs": 2, "seconds": 60}}})
    limited = FlowConfig(group_rate_limit=RateLimit(2, 60.0))
    await wait_for(_flow_is(env, limited), message="the group rate limit written to Redis")
    worker = Worker(app, env.redis, WorkerSettings(queue=env.queue(), concurrency=4, metrics_port=0))
    running = asyncio.create_task(worker.run())
    queue = Queue(env.queue(), env.redis, app=app)
    try:
        await queue.enqueue_many([JobSpec("work", {"n": i}, group="A") for i in range(20)])
        await queue.enqueue_many([JobSpec("work", {"n": i}) for i in range(2)])  # no group
        await wait_for(
            lambda: env.status() if env.status().get("waiting") == 18 else None, message="18 held jobs probed"
        )
        # Pass after pass (3 polling intervals): 18 waiting at 2 per replica would be 5 pods
        # (maxReplicas) if they counted.
        decisions: list[str] = []
        until = asyncio.get_running_loop().time() + 3.0

        def held_down() -> bool:
            decision = env.status().get("lastDecision", "")
            if not decisions or decisions[-1] != decision:
                decisions.append(decision)
            assert (env.replicas() or 0) <= 1 and env.status()["desiredReplicas"] <= 1, env.status()
            return asyncio.get_running_loop().time() >= until

        await wait_for(held_down, timeout=10, interval=0.05, message="passes over the held backlog")
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await queue.aclose()
    assert any("18 more waiting jobs held by group rate limits left out" in d for d in decisions), decisions
    stats = await Queue(env.queue(), env.redis).stats()
    assert (stats.waiting, stats.group_held, stats.completed_total) == (18, 18, 4)
