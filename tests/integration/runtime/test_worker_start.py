"""Starting a worker: misconfiguration stops it with one clear line; the operator's queue is served.

| case                                                 | expectation                                     |
| ---------------------------------------------------- | ----------------------------------------------- |
| wrong password (``requirepass`` server)              | ``Worker.run`` raises ConfigurationError; the   |
|                                                      | process exits non-zero at once, saying so       |
| TLS server whose certificate the client cannot trust | the same, naming the TLS verification           |
| ``JOBQUEUE_QUEUE`` names another queue than the App  | the worker serves the environment's queue       |
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.integration.runtime.processes import spawn_worker, stop
from tests.integration.runtime.test_worker import finished
from tests.support import tls
from worker_runtime import App, Queue, Worker, WorkerSettings, connect
from worker_runtime.embedded_redis import RedisServer, free_port
from worker_runtime.errors import ConfigurationError


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    with RedisServer(extra_args=["--requirepass", "s3cret"]) as server:
        yield server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, int]]:
    reason = tls.tls_unsupported(RedisServer().binary)
    if reason:
        pytest.skip(reason)
    certificates = tls.make_certificates(tmp_path_factory.mktemp("tls"))
    tls_port = free_port()
    with RedisServer(extra_args=tls.tls_server_args(certificates, tls_port)) as server:
        yield server, tls_port


def _bad_url(request: pytest.FixtureRequest, case: str) -> str:
    """The URL for one case; the TLS server is started (or skipped) only for the TLS case, so the
    password cases still run against a redis-server built without TLS."""
    if case == "untrusted TLS certificate":
        _, tls_port = request.getfixturevalue("tls_server")
        return f"rediss://127.0.0.1:{tls_port}/0"
    password_server: RedisServer = request.getfixturevalue("password_server")
    if case == "wrong password":
        return f"redis://:wrong@127.0.0.1:{password_server.port}/0"
    return password_server.url


MISCONFIGURED = ["wrong password", "no password", "untrusted TLS certificate"]
WORDS = {"wrong password": "credentials", "no password": "credentials", "untrusted TLS certificate": "TLS"}


@pytest.mark.parametrize("case", MISCONFIGURED)
async def test_misconfiguration_stops_the_worker_at_start(
    request: pytest.FixtureRequest, queue_name: str, case: str
) -> None:
    client = connect(_bad_url(request, case), retries=0)
    worker = Worker(App(queue_name), client, WorkerSettings(queue=queue_name, metrics_port=0))
    try:
        with pytest.raises(ConfigurationError, match=WORDS[case]) as raised:
            await asyncio.wait_for(worker.run(), 10)
    finally:
        await client.aclose()
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("case", MISCONFIGURED)
def test_a_misconfigured_worker_process_exits_non_zero_saying_why(
    request: pytest.FixtureRequest, queue_name: str, case: str
) -> None:
    url = _bad_url(request, case)
    worker = spawn_worker(url, queue_name, stderr=subprocess.PIPE)
    try:
        _, err = worker.communicate(timeout=20)  # retried forever, it would never end
    finally:
        stop(worker, timeout=1)
    assert worker.returncode != 0
    assert WORDS[case] in err.decode(), err.decode()[-2000:]


async def test_the_worker_serves_the_queue_its_environment_names(
    redis_url: str, redis: aioredis.Redis, queue_name: str, tmp_path: Path
) -> None:
    """The operator sets JOBQUEUE_QUEUE from the JobQueue: that queue is served, whatever the App
    was created with (``worker_apps`` names its App after TEST_QUEUE)."""
    served = Queue(queue_name, redis)
    job = await served.enqueue("sleep", 0)
    worker = spawn_worker(redis_url, "the-apps-own-queue", JOBQUEUE_QUEUE=queue_name)
    try:
        done = await finished(served, job.id, within=20)
    finally:
        stop(worker)
        await served.aclose()
    assert done.result == "slept 0s on attempt 1"
