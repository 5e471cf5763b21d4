"""The runtime on a Redis Cluster (3 primaries, a replica each) started by the suite.

| case | expected |
| --- | --- |
| 100 queues, their slots on every primary | each queue's whole life (``scenario``) works |
| the probe of 300 queues | one pipeline per primary, sent in parallel |
| every script and every key it names on the queue's slot | no CROSSSLOT (the scripts ran on every node) |
| a plain ``redis://`` URL to a cluster node | ``ConfigurationError`` naming redis+cluster:// |
| ``redis+cluster://`` to a server not in cluster mode | ``ConfigurationError`` naming redis:// |
| the scripts flushed on every node | run by source on NOSCRIPT; enqueue, claim go on |
| NOSCRIPT from a node not yet known as a primary (each runner) | run there by source |
| a manual failover of the primary of a queue's slot | MOVED followed: producer and worker go on |
| the same with the blocking producer (``SyncQueue``) | MOVED followed: every enqueue lands |
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio.cluster as async_cluster
from redis.cluster import REPLICA

from tests.integration.topologies import scenario
from tests.support import topologies
from tests.support.wait import wait_for
from worker_runtime import ConfigurationError, Queue, Worker, connect, connect_sync, probe_queues, scripts
from worker_runtime.commands import QueueCommands
from worker_runtime.connection import SyncClient
from worker_runtime.embedded_redis import RedisServer
from worker_runtime.keys import QueueKeys
from worker_runtime.queue import SyncQueue


@pytest.fixture
async def client(cluster: topologies.ClusterSet) -> AsyncIterator[async_cluster.RedisCluster]:
    made = connect(cluster.url)
    assert isinstance(made, async_cluster.RedisCluster)
    await made.initialize()
    yield made
    await made.aclose()


@pytest.fixture
def sync_client(cluster: topologies.ClusterSet) -> Iterator[SyncClient]:
    made = connect_sync(cluster.url)
    yield made
    made.close()


def _names(count: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"c-{prefix}-{i}" for i in range(count)]


def _node_of(client: async_cluster.RedisCluster, queue: str) -> str:
    node = client.get_node_from_key(QueueKeys.for_queue(queue).waiting)
    assert node is not None
    return str(node.name)


async def test_a_hundred_queues_over_every_primary(
    client: async_cluster.RedisCluster, sync_client: SyncClient
) -> None:
    names = _names(100)
    primaries = {node.name for node in client.get_primaries()}
    assert {_node_of(client, name) for name in names} == primaries, "the queues must cover every primary"
    await scenario.exercise(client, sync_client, names)


async def test_the_probe_sends_one_pipeline_per_primary_in_parallel(
    client: async_cluster.RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _names(300)
    sent: list[tuple[str, int]] = []
    in_flight = 0
    most_in_flight = 0
    real = async_cluster.ClusterNode.execute_pipeline

    async def counted(node: async_cluster.ClusterNode, commands: list[object]) -> bool:
        nonlocal in_flight, most_in_flight
        sent.append((node.name, len(commands)))
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await real(node, commands)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    monkeypatch.setattr(async_cluster.ClusterNode, "execute_pipeline", counted)
    observed = await probe_queues(client, names)
    assert set(observed) == set(names)
    assert sorted(name for name, _ in sent) == sorted(node.name for node in client.get_primaries())
    assert sum(count for _, count in sent) == len(names)
    assert most_in_flight == len(sent), "the per-node pipelines must be in flight together"


async def test_a_plain_url_to_a_cluster_node_says_to_use_redis_cluster(
    client: async_cluster.RedisCluster, queue_name: str
) -> None:
    owner = _node_of(client, queue_name)
    other = next(node for node in client.get_primaries() if node.name != owner)
    plain = connect(f"redis://127.0.0.1:{other.port}/0")
    queue = Queue(queue_name, plain)
    try:
        with pytest.raises(ConfigurationError, match=r"redis\+cluster://"):
            await queue.enqueue("ok", 1)
        with pytest.raises(ConfigurationError, match=r"redis\+cluster://"):
            await queue.stats()
    finally:
        await queue.aclose()
        await plain.aclose()


async def test_a_cluster_url_to_a_plain_server_says_to_use_redis(redis_server: RedisServer) -> None:
    client = connect(f"redis+cluster://127.0.0.1:{redis_server.port}")
    try:
        with pytest.raises(ConfigurationError, match="not in cluster mode"):
            await Queue("q", client).stats()
    finally:
        await client.aclose()


async def test_scripts_lost_by_every_node_are_loaded_again(
    client: async_cluster.RedisCluster, sync_client: SyncClient
) -> None:
    names = _names(6)
    await client.script_flush()  # on every primary
    await scenario.exercise(client, sync_client, names)


RUNNERS = ["run", "run_settled", "run_replicated", "run_sync", "run_many_sync", "run_replicated_sync"]


@pytest.mark.parametrize("runner", RUNNERS)
async def test_noscript_from_a_node_not_yet_known_as_a_primary_runs_the_script_there(
    client: async_cluster.RedisCluster, sync_client: SyncClient, runner: str
) -> None:
    """Between a failover and the client's next read of the layout, the promoted replica (it has no
    scripts) answers for the slot while the client still counts it among the replicas: loading the
    scripts "on every primary" misses it, so the script must run there by its source."""
    (name,) = _names(1)
    key = QueueKeys.for_queue(name).waiting
    sync_node = sync_client.get_node_from_key(key)
    assert sync_node is not None
    sync_node.redis_connection.script_flush()
    viewed = sync_node if runner.endswith("_sync") else client.get_node_from_key(key)
    assert viewed is not None
    viewed.server_type = REPLICA  # the view a failover leaves until the layout is read again
    calls = [QueueCommands(name).probe() for _ in range(2)]
    if runner == "run":
        observed = [await scripts.run(client, calls[0])]
    elif runner == "run_settled":
        observed = await scripts.run_settled(client, calls)
    elif runner == "run_replicated":
        observed = await scripts.run_replicated(client, calls, replicas=1, timeout_ms=5000)
    elif runner == "run_sync":
        observed = [scripts.run_sync(sync_client, calls[0])]
    elif runner == "run_many_sync":
        observed = scripts.run_many_sync(sync_client, calls)
    else:
        observed = scripts.run_replicated_sync(sync_client, calls, replicas=1, timeout_ms=5000)
    assert [o.waiting for o in observed] == [0] * len(observed)
    assert sync_node.redis_connection.script_exists(scripts.load(scripts.Script.PROBE).sha) == [True]


async def test_a_failover_of_a_queues_primary_is_followed(
    cluster: topologies.ClusterSet, client: async_cluster.RedisCluster
) -> None:
    (name,) = _names(1)
    app = scenario.build_app(name)
    queue = Queue(name, client, app=app)
    worker = Worker(app, client, scenario.worker_settings(name))
    running = asyncio.create_task(worker.run())
    try:
        await queue.enqueue("ok", 1)
        await wait_for(lambda: _completed(queue, 1), message="the first job done")
        primary = client.get_node_from_key(QueueKeys.for_queue(name).waiting)
        assert primary is not None
        replica = cluster.replica_of(primary.port)
        cluster.manual_failover(replica)  # the replica takes the slot over; the old primary follows it
        for n in range(2, 12):
            await queue.enqueue("ok", n)
        await wait_for(lambda: _completed(queue, 11), timeout=30, message="jobs after the failover done")
        moved = client.get_node_from_key(QueueKeys.for_queue(name).waiting)
        assert moved is not None and moved.port == replica, "the client follows the slot to its new primary"
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await queue.aclose()


def test_the_blocking_producer_follows_a_failover(
    cluster: topologies.ClusterSet, sync_client: SyncClient
) -> None:
    (name,) = _names(1)
    queue = SyncQueue(name, sync_client)
    ids = [queue.enqueue("ok", 1).id]
    primary = sync_client.get_node_from_key(QueueKeys.for_queue(name).waiting)
    assert primary is not None
    replica = cluster.replica_of(primary.port)
    cluster.manual_failover(replica)
    ids += [queue.enqueue("ok", n).id for n in range(2, 12)]
    assert [queue.get_job(job_id).id for job_id in ids] == ids
    assert queue.stats().waiting == 11
    moved = sync_client.get_node_from_key(QueueKeys.for_queue(name).waiting)
    assert moved is not None and moved.port == replica, "the client follows the slot to its new primary"


async def _completed(queue: Queue, count: int) -> bool:
    return (await queue.stats()).completed == count
