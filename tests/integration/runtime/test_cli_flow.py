"""``jobqueue pause|resume|limit`` and ``jobqueue schedules``: the real CLI as a subprocess, on a
real redis-server; a mistake is one line and a usage exit code."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.integration.runtime.test_cli import jobqueue, one_line_error
from worker_runtime import Queue
from worker_runtime.flow import FlowConfig, RateLimit


async def test_pause_limit_resume(redis: aioredis.Redis, redis_url: str, queue_name: str) -> None:
    url = ["--redis-url", redis_url]
    paused = jobqueue("pause", queue_name, *url)
    assert paused.returncode == 0 and paused.stdout.strip() == "claims: paused", paused
    limited = jobqueue("limit", queue_name, *url, "--rate", "50/2", "--max-running", "3")
    assert limited.stdout.strip() == "claims: paused; rate limit 50/2s; max running 3", limited
    queue = Queue(queue_name, redis)
    assert await queue.flow() == FlowConfig(True, RateLimit(50, 2.0), 3)
    stats = jobqueue("stats", queue_name, *url)
    assert "claims: paused; rate limit 50/2s (0 started in this window); max running 3" in stats.stdout
    resumed = jobqueue("resume", queue_name, *url)
    assert resumed.stdout.strip() == "claims: running; rate limit 50/2s; max running 3"
    cleared = jobqueue("limit", queue_name, *url, "--rate", "off", "--max-running", "off")
    assert cleared.stdout.strip() == "claims: running" and await queue.flow() == FlowConfig()
    one_line_error(jobqueue("limit", queue_name, *url, "--rate", "0/1"), 2, "--rate", "0/1")
    one_line_error(jobqueue("limit", queue_name, *url, "--max-running", "-2"), 2, "--max-running")
    await queue.aclose()


async def test_schedules_add_list_remove(redis: aioredis.Redis, redis_url: str, queue_name: str) -> None:
    url = ["--redis-url", redis_url]
    added = jobqueue("schedules", queue_name, "add", "nightly", "report", "--cron", "0 3 * * *",
                     "--tz", "Europe/Berlin", "--payload", '{"kind": "daily"}', *url)  # fmt: skip
    assert added.returncode == 0 and added.stdout.strip() == "added schedule nightly", added
    again = jobqueue("schedules", queue_name, "add", "nightly", "report", "--cron", "0 3 * * *",
                     "--tz", "Europe/Berlin", "--payload", '{"kind": "daily"}', *url)  # fmt: skip
    assert again.stdout.strip() == "unchanged: schedule nightly"
    listed = jobqueue("schedules", queue_name, "list", *url)
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("nightly")]
    assert "report cron '0 3 * * *' (Europe/Berlin)" in row
    (info,) = await Queue(queue_name, redis).schedules()
    assert info.next_ms is not None and info.schedule.payload == '{"kind":"daily"}'
    one_line_error(
        jobqueue("schedules", queue_name, "add", "x", "job", "--cron", "99 * * * *", *url), 2, "cron"
    )
    one_line_error(jobqueue("schedules", queue_name, "add", "x", "job", *url), 2, "--cron", "--every")
    removed = jobqueue("schedules", queue_name, "remove", "nightly", *url)
    assert removed.stdout.strip() == "removed schedule nightly"
    one_line_error(jobqueue("schedules", queue_name, "remove", "nightly", *url), 1, "no schedule")


async def test_group_rate_limit_and_enqueue_with_a_group(
    redis: aioredis.Redis, redis_url: str, queue_name: str
) -> None:
    url = ["--redis-url", redis_url]
    limited = jobqueue("limit", queue_name, *url, "--group-rate", "10/1s")
    assert limited.stdout.strip() == "claims: running; group rate limit 10/1s", limited
    enqueued = jobqueue("enqueue", queue_name, "report", "--group", "tenant-42", *url)
    queue = Queue(queue_name, redis)
    assert (await queue.get_job(enqueued.stdout.strip())).group == "tenant-42"
    assert (await queue.flow()).group_rate_limit == RateLimit(10, 1.0)
    one_line_error(jobqueue("enqueue", queue_name, "report", "--group", "", *url), 2, "group")
    cancelled = jobqueue("cancel", queue_name, enqueued.stdout.strip(), *url)
    assert cancelled.stdout.strip() == "cancelled 1 job(s)", cancelled
    one_line_error(jobqueue("cancel", queue_name, "nope", *url), 1, "nope")
    one_line_error(jobqueue("limit", queue_name, *url, "--group-rate", "0/1s"), 2, "--group-rate")
    cleared = jobqueue("limit", queue_name, *url, "--group-rate", "off")
    assert cleared.stdout.strip() == "claims: running" and await queue.flow() == FlowConfig()
    await queue.aclose()
