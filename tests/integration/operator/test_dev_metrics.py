"""``jobqueue dev`` serves the operator's metrics, so a local Prometheus can scrape a laptop run.

Case matrix: a free port -> ``/metrics`` on loopback has the queue's gauges under the operator's
labels (namespace ``default``), its scale-event counters at 0 before any event, build info and no
``_created``; a port in use -> a one-line warning and the loop runs without them.
"""

from __future__ import annotations

import asyncio
import io
import socket
import urllib.request
from pathlib import Path

import redis.asyncio as aioredis
from jobqueue_operator.dev import cli as devcli
from jobqueue_operator.dev import loop as devloop
from rich.console import Console

from tests.integration.operator.test_dev_pause import manifest
from worker_runtime import Queue
from worker_runtime.embedded_redis import free_port


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_dev_mode_serves_the_operators_metrics(
    redis: aioredis.Redis, redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    queue = Queue(queue_name, redis)
    for index in range(3):
        await queue.enqueue("work", {"n": index})
    port = free_port()
    metrics = devcli.serve_metrics(port, Console(file=io.StringIO()))
    assert metrics is not None
    paused = manifest(queue_name, {}, paused=True)  # probed, and no worker process to start
    loop = devloop.DevLoop(
        devloop.targets_from_documents([paused]), redis_url, log_dir=tmp_path, metrics=metrics
    )
    try:
        await loop.step()
    finally:
        await loop.aclose(within=10)
        await queue.aclose()
    text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
    labels = f'jobqueue="{queue_name}",namespace="default",queue="{queue_name}"'
    assert f"jobqueue_queue_waiting{{{labels}}} 3.0" in text
    assert f'jobqueue_scale_events_total{{direction="up",{labels},reason="activated"}} 0.0' in text
    assert f"jobqueue_redis_up{{{labels}}} 1.0" in text
    assert 'jobqueue_build_info{component="operator"' in text and "_created" not in text


def test_a_port_in_use_is_a_warning_not_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = io.StringIO()
        assert devcli.serve_metrics(taken.getsockname()[1], Console(file=out, width=200)) is None
    assert "operator metrics not served" in out.getvalue() and "--metrics-port" in out.getvalue()
