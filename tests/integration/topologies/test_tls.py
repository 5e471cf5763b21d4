"""The runtime over TLS, against servers with certificates the suite generates.

| case | expected |
| --- | --- |
| ``rediss://`` and the CA as a file | a queue's whole life (``scenario``) |
| ``redis://`` with ``TlsOptions(enabled=True)`` and the CA as PEM text | the same (the operator's path) |
| a server that requires a client certificate, given one | the same |
| that server, no client certificate | ``ConfigurationError`` at once, saying the handshake failed |
| no CA for a self-signed server (async and blocking) | ``ConfigurationError`` at once, not a hang |
| ``insecure_skip_verify`` and no CA | served |
| TLS files but TLS off | ``ConfigurationError`` naming rediss:// |
| a worker process and ``jobqueue stats`` given ``JOBQUEUE_REDIS_TLS*`` files | served |
| a worker process without its client certificate | exits 1, its last line naming TLS |
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration.runtime import processes
from tests.integration.runtime.test_cli import jobqueue
from tests.integration.topologies import scenario
from tests.integration.topologies.conftest import TlsServers
from tests.support.wait import wait_for
from worker_runtime import ConfigurationError, Queue, SyncQueue, connect, connect_sync
from worker_runtime.connection import AsyncClient, SyncClient
from worker_runtime.endpoint import TlsOptions


def _clients(url: str, tls: TlsOptions) -> tuple[AsyncClient, SyncClient]:
    return connect(url, tls=tls), connect_sync(url, tls=tls)


@pytest.fixture
async def with_ca_file(tls_servers: TlsServers) -> AsyncIterator[tuple[AsyncClient, SyncClient]]:
    client, sync_client = _clients(tls_servers.url(), TlsOptions(ca_file=str(tls_servers.certificates.ca)))
    yield client, sync_client
    await client.aclose()
    sync_client.close()


async def test_a_queues_life_over_rediss(
    with_ca_file: tuple[AsyncClient, SyncClient], queue_name: str
) -> None:
    await scenario.exercise(*with_ca_file, [queue_name])


async def test_tls_turned_on_for_a_redis_url_with_the_ca_as_text(
    tls_servers: TlsServers, queue_name: str
) -> None:
    tls = TlsOptions(enabled=True, ca_data=tls_servers.certificates.ca.read_text())
    client, sync_client = _clients(f"redis://127.0.0.1:{tls_servers.port}/0", tls)
    try:
        await scenario.exercise(client, sync_client, [queue_name])
    finally:
        await client.aclose()
        sync_client.close()


async def test_mutual_tls_with_a_client_certificate(tls_servers: TlsServers, queue_name: str) -> None:
    paths = tls_servers.certificates
    tls = TlsOptions(ca_file=str(paths.ca), cert_file=str(paths.client_cert), key_file=str(paths.client_key))
    client, sync_client = _clients(tls_servers.url(tls_servers.mutual_port), tls)
    try:
        await scenario.exercise(client, sync_client, [queue_name])
    finally:
        await client.aclose()
        sync_client.close()


async def test_mutual_tls_without_a_client_certificate_is_a_configuration_error(
    tls_servers: TlsServers,
) -> None:
    tls = TlsOptions(ca_file=str(tls_servers.certificates.ca))
    client = connect(tls_servers.url(tls_servers.mutual_port), tls=tls)
    queue = Queue("q", client, enqueue_timeout=30)
    try:
        with pytest.raises(ConfigurationError, match="TLS"):
            await queue.enqueue("ok", 1)
    finally:
        await queue.aclose()
        await client.aclose()


@pytest.fixture
def no_ca(tls_servers: TlsServers) -> Iterator[str]:
    yield tls_servers.url()


async def test_no_ca_for_a_self_signed_server_is_a_configuration_error_not_a_hang(no_ca: str) -> None:
    client = connect(no_ca)
    queue = Queue("q", client, enqueue_timeout=30)  # far longer than the test's own timeout
    try:
        with pytest.raises(ConfigurationError, match="TLS verification of the Redis server failed"):
            await queue.enqueue("ok", 1)
        with pytest.raises(ConfigurationError, match="TLS verification"):
            await queue.stats()
    finally:
        await queue.aclose()
        await client.aclose()


def test_no_ca_with_the_blocking_producer(no_ca: str) -> None:
    client = connect_sync(no_ca)
    try:
        with pytest.raises(ConfigurationError, match="TLS verification of the Redis server failed"):
            SyncQueue("q", client, enqueue_timeout=30).enqueue("ok", 1)
    finally:
        client.close()


async def test_insecure_skip_verify_serves_without_a_ca(tls_servers: TlsServers, queue_name: str) -> None:
    client = connect(tls_servers.url(), tls=TlsOptions(insecure_skip_verify=True))
    queue = Queue(queue_name, client)
    try:
        await queue.enqueue("ok", 1)
        assert (await queue.stats()).waiting == 1
    finally:
        await queue.aclose()
        await client.aclose()


def test_tls_files_with_tls_off_are_refused(tls_servers: TlsServers) -> None:
    with pytest.raises(ConfigurationError, match=r"rediss://"):
        connect(f"redis://127.0.0.1:{tls_servers.port}/0", tls=TlsOptions(ca_file="/ca.crt"))


def _tls_env(tls_servers: TlsServers, **extra: str) -> dict[str, str]:
    paths = tls_servers.certificates
    return {
        "JOBQUEUE_REDIS_URL": f"redis://127.0.0.1:{tls_servers.mutual_port}/0",
        "JOBQUEUE_REDIS_TLS": "true",
        "JOBQUEUE_REDIS_TLS_CA_FILE": str(paths.ca),
        "JOBQUEUE_REDIS_TLS_CERT_FILE": str(paths.client_cert),
        "JOBQUEUE_REDIS_TLS_KEY_FILE": str(paths.client_key),
        **extra,
    }


async def test_a_worker_process_with_tls_files_from_its_environment(
    tls_servers: TlsServers, queue_name: str
) -> None:
    """What a worker pod gets: ``JOBQUEUE_REDIS_TLS*`` pointing at files mounted from Secrets."""
    paths = tls_servers.certificates
    tls = TlsOptions(ca_file=str(paths.ca), cert_file=str(paths.client_cert), key_file=str(paths.client_key))
    client = connect(tls_servers.url(tls_servers.mutual_port), tls=tls)
    queue = Queue(queue_name, client)
    worker = processes.spawn_worker("", queue_name, **_tls_env(tls_servers))
    try:
        await queue.enqueue("sleep", 0)
        await wait_for(lambda: _completed(queue), timeout=60, message="the job done by the worker process")
        result = jobqueue("stats", queue_name, env=_tls_env(tls_servers))  # the admin commands too
        assert result.returncode == 0 and "completed" in result.stdout, result
    finally:
        assert processes.stop(worker) == 0
        await queue.aclose()
        await client.aclose()


def test_a_worker_without_its_client_certificate_exits_with_one_line(
    tls_servers: TlsServers, queue_name: str
) -> None:
    env = _tls_env(tls_servers, JOBQUEUE_REDIS_TLS_CERT_FILE="", JOBQUEUE_REDIS_TLS_KEY_FILE="")
    env |= {"TEST_QUEUE": queue_name, "JOBQUEUE_QUEUE": queue_name}
    result = jobqueue("worker", processes.APP, env=env)
    # With TLS 1.3 the server refuses the missing certificate after the handshake; its alert can
    # be lost to a connection reset, which the worker retries (one warning) until it reads it.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    *retries, last = [line for line in result.stderr.splitlines() if line.strip()]
    assert last.startswith("jobqueue worker: TLS handshake with the Redis server failed"), result.stderr
    assert all("redis unreachable" in line for line in retries), result.stderr


async def _completed(queue: Queue) -> bool:
    return (await queue.stats()).completed == 1
