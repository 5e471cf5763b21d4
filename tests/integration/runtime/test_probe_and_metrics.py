"""Probe (depth, oldest ready age, counters for many queues in one round trip) and /metrics."""

from __future__ import annotations

import asyncio
import urllib.request

import redis.asyncio as aioredis

from tests.integration.runtime.conftest import WorkerFactory
from tests.integration.runtime.test_worker import finished
from tests.support.wait import wait_for
from worker_runtime import App, JobContext, JobState, Permanent, Queue, http_server, probe_queues
from worker_runtime.embedded_redis import free_port


async def test_probe_reads_many_queues_in_one_round_trip(redis: aioredis.Redis, queue_name: str) -> None:
    names = [f"{queue_name}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        q = Queue(name, redis)
        for _ in range(i):
            await q.enqueue("job")
        await q.enqueue("later", delay=30)
        await q.aclose()
    before = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    seen = await probe_queues(redis, names)
    after = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    assert after - before == len(names)  # one script per queue, sent as one pipeline
    assert [seen[n].waiting for n in names] == [0, 1, 2, 3, 4]
    assert all(seen[n].delayed == 1 and seen[n].enqueued_total == i + 1 for i, n in enumerate(names))
    assert seen[names[0]].oldest_ready_age_s == 0.0


async def test_oldest_age_counts_from_ready_time(redis: aioredis.Redis, queue_name: str) -> None:
    queue = Queue(queue_name, redis)
    await queue.enqueue("soon", delay=0.3)
    await asyncio.sleep(0.1)
    await queue.enqueue("now")
    age_now = (await queue.stats()).oldest_ready_age_s
    assert 0 <= age_now < 0.1  # the delayed job is not ready yet, so it does not count
    # Once due (but not yet promoted by any worker) the delayed job counts from its due time.
    await wait_for(lambda: _age_over(queue, 0.35), timeout=5, message="age grows past 0.35s")
    stats = await queue.stats()
    assert stats.waiting == 1 and stats.delayed == 1
    await queue.aclose()


async def _age_over(queue: Queue, seconds: float) -> bool:
    return (await queue.stats()).oldest_ready_age_s > seconds


async def test_metrics_endpoint_counts_outcomes_without_ids(
    app: App, queue: Queue, start_worker: WorkerFactory
) -> None:
    @app.job()
    async def ok(ctx: JobContext, payload: None) -> None:
        return None

    @app.job()
    async def bad(ctx: JobContext, payload: None) -> None:
        raise Permanent("no")

    worker = start_worker(app)
    port = free_port()
    server = http_server.serve(port, worker.metrics.registry, lambda: worker.healthy, host="127.0.0.1")
    try:
        good = [await queue.enqueue("ok") for _ in range(3)]
        poison = await queue.enqueue("bad")
        for job in good:
            await finished(queue, job.id)
        await finished(queue, poison.id, JobState.DEAD)

        def scrape(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()

        async def counted() -> str | None:
            _, text = await asyncio.to_thread(scrape, "/metrics")
            return text if 'outcome="dead"' in text else None

        text = await wait_for(counted, message="dead outcome exported")
        q = app.queue
        assert f'jobqueue_jobs_total{{job_name="ok",outcome="completed",queue="{q}"}} 3.0' in text
        assert f'jobqueue_jobs_dead_lettered_total{{job_name="bad",queue="{q}"}} 1.0' in text
        assert f'jobqueue_job_duration_seconds_count{{job_name="ok",queue="{q}"}} 3.0' in text
        assert "jobqueue_claim_latency_seconds_bucket" in text
        # Every counter of the app's handlers exists from the start, at 0 until its first event, so
        # Prometheus' increase() sees that first event; no `_created` series beside them.
        assert f'jobqueue_job_retries_total{{job_name="ok",queue="{q}"}} 0.0' in text
        assert f'jobqueue_jobs_total{{job_name="bad",outcome="retried",queue="{q}"}} 0.0' in text
        assert f'jobqueue_stalled_recovered_total{{queue="{q}"}} 0.0' in text
        assert "_created" not in text
        assert f'jobqueue_redis_up{{queue="{q}"}} 1.0' in text
        assert all(job.id not in text for job in [*good, poison])
        assert await asyncio.to_thread(scrape, "/healthz") == (200, "ok\n")
    finally:
        server.shutdown()
        server.server_close()
