"""The producer when Redis is not there, refuses us, or one caller's payload is bad.

Each case runs against a redis-server of its own (a password, an outage, TLS), on both producers.

| case                                        | expectation                                                  |
| ------------------------------------------- | ------------------------------------------------------------ |
| wrong password / none given                 | ``ConfigurationError`` at once: one connection, no retries   |
| TLS server, client without its CA           | ``ConfigurationError`` naming the TLS verification, at once  |
| unknown host                                | ``ConfigurationError`` naming the host                       |
| nothing listening (connection refused)      | ``EnqueueTimeout`` after ``enqueue_timeout``, with the id    |
| outage shorter than ``enqueue_timeout``     | the enqueue waits, then succeeds                             |
| outage longer                               | ``EnqueueTimeout``; retried with its ``job_id``: one job     |
| admin reads during an outage                | ``RedisUnavailable``, not a redis-py error                   |
| 3 coalesced enqueues, one lone surrogate    | that one ``PayloadError``, the other two written             |
| a payload nested 10,000 levels deep         | ``PayloadError``, not ``RecursionError``                     |
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tests.support import tls
from worker_runtime import (
    ConfigurationError,
    EnqueueTimeout,
    JobSpec,
    PayloadError,
    Queue,
    RedisUnavailable,
    SyncQueue,
    connect,
    connect_sync,
)
from worker_runtime.embedded_redis import RedisServer, free_port

# Bounds a test waits for a call that must end on its own; reaching one is the failure.
GUARD_SECONDS = 30
ServerFactory = Callable[..., RedisServer]


@pytest.fixture
def server_factory() -> Iterator[ServerFactory]:
    started: list[RedisServer] = []

    def start(*args: str, port: int | None = None) -> RedisServer:
        server = RedisServer(extra_args=args) if port is None else RedisServer(port=port, extra_args=args)
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


class Producers:
    """Makes producers on clients of their own; closes them all at teardown."""

    def __init__(self) -> None:
        self.queues: list[Queue] = []
        self.clients: list[redis.Redis] = []

    def make(self, name: str, url: str, **options: Any) -> Queue:
        queue = Queue(name, connect(url, **options.pop("client", {})), **options)
        self.queues.append(queue)
        return queue

    def make_sync(self, name: str, url: str, **options: Any) -> SyncQueue:
        client = connect_sync(url, **options.pop("client", {}))
        self.clients.append(client)
        return SyncQueue(name, client, **options)

    async def aclose(self) -> None:
        for queue in self.queues:
            await queue.aclose()
            await queue.redis.aclose()
        for client in self.clients:
            client.close()


@pytest.fixture
async def producers() -> AsyncIterator[Producers]:
    made = Producers()
    yield made
    await made.aclose()


def _connections(admin: redis.Redis) -> int:
    return int(admin.info("stats")["total_connections_received"])


async def _guarded(call: Any) -> Any:
    async with asyncio.timeout(GUARD_SECONDS):
        return await call


@pytest.mark.parametrize("credentials", [":wrong@", ""], ids=["wrong-password", "no-password"])
async def test_refused_credentials_fail_at_once(
    server_factory: ServerFactory, producers: Producers, queue_name: str, credentials: str
) -> None:
    server = server_factory("--requirepass", "s3cret")
    admin = redis.Redis(port=server.port, password="s3cret")
    url = f"redis://{credentials}127.0.0.1:{server.port}/0"
    before = _connections(admin)
    # Clients that retry underneath: the configuration error must still not be retried.
    queue = producers.make(queue_name, url, enqueue_timeout=60, client={"retries": 3})
    with pytest.raises(ConfigurationError, match="credentials"):
        await _guarded(queue.enqueue("job", {"n": 1}))
    sync_queue = producers.make_sync(queue_name, url, enqueue_timeout=60, client={"retries": 3})
    with pytest.raises(ConfigurationError, match="credentials"):
        sync_queue.enqueue("job", {"n": 1})
    with pytest.raises(ConfigurationError):
        sync_queue.stats()
    # One connection per call: redis-py's own retries would make it 4 (or 16) each.
    assert _connections(admin) - before <= 3 + 1  # + admin's own connection
    assert admin.dbsize() == 0
    admin.close()


def _tls_server(server_factory: ServerFactory, tmp_path: Path) -> tuple[int, tls.Certificates]:
    reason = tls.tls_unsupported(RedisServer().binary)
    if reason:
        pytest.skip(reason)
    certificates = tls.make_certificates(tmp_path)
    tls_port = free_port()
    server_factory(*tls.tls_server_args(certificates, tls_port))
    return tls_port, certificates


async def test_tls_without_the_servers_ca_fails_at_once(
    server_factory: ServerFactory, producers: Producers, tmp_path: Path, queue_name: str
) -> None:
    tls_port, certificates = _tls_server(server_factory, tmp_path)
    url = f"rediss://127.0.0.1:{tls_port}/0"
    with pytest.raises(ConfigurationError, match="TLS verification"):
        await _guarded(producers.make(queue_name, url, enqueue_timeout=60).enqueue("job"))
    with pytest.raises(ConfigurationError, match="TLS verification"):
        producers.make_sync(queue_name, url, enqueue_timeout=60).enqueue("job")
    trusted = producers.make(queue_name, url, client={"ssl_ca_certs": str(certificates.ca)})
    assert (await _guarded(trusted.enqueue("job"))).created


async def test_unknown_host_is_a_configuration_error(producers: Producers, queue_name: str) -> None:
    url = "redis://no-such-host.invalid:6379/0"
    with pytest.raises(ConfigurationError, match="host not found"):
        await _guarded(producers.make(queue_name, url, enqueue_timeout=60).enqueue("job"))
    with pytest.raises(ConfigurationError, match="host not found"):
        producers.make_sync(queue_name, url, enqueue_timeout=60).enqueue("job")


async def test_unreachable_redis_gives_up_after_the_enqueue_timeout(
    producers: Producers, queue_name: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    queue = producers.make(queue_name, url, enqueue_timeout=1)
    with pytest.raises(EnqueueTimeout, match="job_id") as raised:
        await _guarded(queue.enqueue("job", job_id="order-7"))
    assert raised.value.job_id == "order-7" and "connection refused" in str(raised.value).lower()
    with pytest.raises(EnqueueTimeout) as raised:
        await _guarded(queue.enqueue("job"))
    assert len(raised.value.job_id) == 32  # the id to retry with, although the caller gave none
    with pytest.raises(EnqueueTimeout) as raised:
        await _guarded(queue.enqueue_many([JobSpec("job", job_id="a"), JobSpec("job", job_id="b")]))
    assert raised.value.job_ids == ("a", "b")
    with pytest.raises(RedisUnavailable, match=r"(?i)connection refused"):
        await _guarded(queue.stats())

    sync_queue = producers.make_sync(queue_name, url, enqueue_timeout=1)
    with pytest.raises(EnqueueTimeout, match=r"(?i)connection refused") as raised:
        sync_queue.enqueue("job", job_id="order-8")
    assert raised.value.job_id == "order-8"
    with pytest.raises(EnqueueTimeout):
        sync_queue.enqueue_many([JobSpec("job")])
    for read in (sync_queue.stats, sync_queue.dead_jobs, lambda: sync_queue.get_job("x")):
        with pytest.raises(RedisUnavailable):
            read()


async def test_an_outage_shorter_than_the_timeout_is_waited_out(
    server_factory: ServerFactory, producers: Producers, queue_name: str
) -> None:
    port = free_port()
    server = server_factory(port=port)
    queue = producers.make(queue_name, server.url, enqueue_timeout=20)
    sync_queue = producers.make_sync(queue_name, server.url, enqueue_timeout=20)
    await queue.enqueue("job", job_id="before")
    sync_queue.enqueue("job", job_id="before-sync")
    server.stop()
    restart = threading.Timer(1.0, lambda: server_factory(port=port))
    restart.start()
    try:
        assert (await _guarded(queue.enqueue("job", job_id="during"))).created
        assert sync_queue.enqueue("job", job_id="after").created
    finally:
        restart.join()
    assert (await queue.stats()).waiting == 2  # the restarted server is empty: during + after


async def test_a_timed_out_enqueue_is_retried_with_its_job_id(
    server_factory: ServerFactory, producers: Producers, queue_name: str
) -> None:
    port = free_port()
    server = server_factory(port=port)
    queue = producers.make(queue_name, server.url, enqueue_timeout=0.5)
    await queue.enqueue("warm-up")
    server.stop()
    with pytest.raises(EnqueueTimeout) as raised:
        await _guarded(queue.enqueue("charge", {"order": 9}))
    server_factory(port=port)
    job_id = raised.value.job_id
    first = await queue.enqueue("charge", {"order": 9}, job_id=job_id)
    again = await queue.enqueue("charge", {"order": 9}, job_id=job_id)
    assert first.created and not again.created
    assert (await queue.stats()).waiting == 1


LONE_SURROGATE = "caf\udce9"


async def test_a_bad_payload_fails_only_its_own_coalesced_enqueue(
    redis: aioredis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, redis)
    results = await asyncio.gather(
        queue.enqueue("job", {"name": "good-1"}, job_id="good-1"),
        queue.enqueue("job", {"name": LONE_SURROGATE}, job_id="bad"),
        queue.enqueue("job", {"name": "good-2"}, job_id="good-2"),
        return_exceptions=True,
    )
    assert isinstance(results[1], PayloadError) and "surrogate" in str(results[1])
    assert [getattr(r, "id", r) for r in (results[0], results[2])] == ["good-1", "good-2"]
    for job_id in ("good-1", "good-2"):
        assert (await queue.get_job(job_id)).payload == {"name": job_id}
    assert (await queue.stats()).waiting == 2
    await queue.aclose()


def _nested(depth: int) -> Any:
    payload: Any = "leaf"
    for _ in range(depth):
        payload = [payload]
    return payload


@pytest.mark.parametrize("payload", [{"name": LONE_SURROGATE}, _nested(10_000)], ids=["surrogate", "nested"])
async def test_unencodable_payloads_are_payload_errors(
    redis: aioredis.Redis, redis_url: str, queue_name: str, payload: Any
) -> None:
    queue = Queue(queue_name, redis)
    with pytest.raises(PayloadError):
        await queue.enqueue("job", payload)
    with pytest.raises(PayloadError):
        await queue.enqueue_many([JobSpec("job", 1), JobSpec("job", payload)])
    client = connect_sync(redis_url)
    with pytest.raises(PayloadError):
        SyncQueue(queue_name, client).enqueue("job", payload)
    client.close()
    assert (await queue.stats()).enqueued_total == 0
    await queue.aclose()
