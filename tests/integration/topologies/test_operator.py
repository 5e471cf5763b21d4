"""The operator (real kopf in a thread, the emulated API server) with a JobQueue whose Redis is the
tier's Cluster, and one whose Redis requires TLS with a client certificate, all from Secrets.

| case | expected |
| --- | --- |
| three JobQueues on the cluster, queues on different primaries | each probed, scaled from its backlog |
| the CA, client certificate and key from Secrets | probed over mutual TLS, scaled; pods get the files |
| the same JobQueue without its client certificate | not scaled; Degraded, the probe failed |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
import redis.asyncio.cluster as async_cluster
from jobqueue_operator import handlers, redis_spec

from tests.integration.operator.conftest import jobqueue_spec, merge
from tests.integration.topologies.conftest import TlsServers
from tests.support import topologies
from tests.support.emulator import RealisticEmulator
from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES, SECRETS, AsyncKube, secret_body
from tests.support.kube_fixtures import PRODUCT_CRD_PATH, StartOperator
from tests.support.wait import wait_for
from worker_runtime import JobSpec, Queue, connect
from worker_runtime.connection import AsyncClient
from worker_runtime.endpoint import TlsOptions
from worker_runtime.keys import QueueKeys

Body = dict[str, Any]


@pytest.fixture
async def operator(
    emulator: RealisticEmulator, kube: AsyncKube, start_operator: StartOperator
) -> AsyncIterator[AsyncKube]:
    emulator.register_crd(PRODUCT_CRD_PATH)
    await start_operator(register=handlers.register, memo=kopf.Memo(server=str(emulator.url).rstrip("/")))
    yield kube


def _jobqueue(name: str, queue: str, secret: str, overrides: Body | None = None) -> Body:
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name},
        "spec": merge(jobqueue_spec(queue, secret=secret), overrides or {}),
    }


def _replicas(emulator: RealisticEmulator, name: str) -> int | None:
    body = emulator.get_object(DEPLOYMENTS, "default", f"{name}-worker")
    return None if body is None else int(body["spec"]["replicas"])


def _status(emulator: RealisticEmulator, name: str) -> Body:
    return dict((emulator.get_object(JOBQUEUES, "default", name) or {}).get("status") or {})


async def _enqueue(client: AsyncClient, queue: str, count: int) -> None:
    producer = Queue(queue, client)
    try:
        await producer.enqueue_many([JobSpec("work", {"n": n}) for n in range(count)])
    finally:
        await producer.aclose()


def _on_distinct_primaries(client: async_cluster.RedisCluster, prefix: str, count: int) -> list[str]:
    """Queue names whose slots live on ``count`` different primaries."""
    names: dict[str, str] = {}
    for n in range(1000):
        queue = f"{prefix}-{n}"
        node = client.get_node_from_key(QueueKeys.for_queue(queue).waiting)
        assert node is not None
        names.setdefault(node.name, queue)
        if len(names) == count:
            return list(names.values())
    raise AssertionError("the cluster has fewer primaries than asked")


async def test_jobqueues_on_a_cluster_are_probed_and_scaled(
    operator: AsyncKube, emulator: RealisticEmulator, cluster: topologies.ClusterSet, queue_name: str
) -> None:
    client = connect(cluster.url)
    assert isinstance(client, async_cluster.RedisCluster)
    try:
        await client.initialize()
        queues = _on_distinct_primaries(client, queue_name, 3)
        await operator.create(SECRETS, secret_body("cluster-redis", {"url": cluster.url}))
        for index, queue in enumerate(queues):
            await operator.create(JOBQUEUES, _jobqueue(f"c{index}", queue, "cluster-redis"))
        for index, queue in enumerate(queues):
            await _enqueue(client, queue, 2 * (index + 1))  # 2, 4, 6 jobs: 1, 2, 3 replicas
        for index in range(3):
            await wait_for(
                lambda i=index: _replicas(emulator, f"c{i}") == i + 1,  # type: ignore[misc]
                timeout=30,
                message=f"c{index} scaled to {index + 1}",
            )
            await wait_for(
                lambda i=index: _status(emulator, f"c{i}").get("waiting") == 2 * (i + 1),  # type: ignore[misc]
                message=f"c{index}'s status",
            )
    finally:
        await client.aclose()


def _tls_secrets(tls_servers: TlsServers) -> Body:
    paths = tls_servers.certificates
    return secret_body(
        "tls-redis",
        {
            "url": f"redis://127.0.0.1:{tls_servers.mutual_port}/0",
            "ca.crt": paths.ca.read_text(),
            "tls.crt": paths.client_cert.read_text(),
            "tls.key": paths.client_key.read_text(),
        },
    )


def _tls_spec(client_cert: bool) -> Body:
    tls: Body = {"enabled": True, "caSecretRef": {"name": "tls-redis", "key": "ca.crt"}}
    if client_cert:
        tls["clientCertSecretRef"] = {"name": "tls-redis"}
    return {"queue": {"redis": {"tls": tls}}}


async def _tls_jobqueue_with_jobs(
    kube: AsyncKube, servers: TlsServers, client: AsyncClient, name: str, queue: str, *, client_cert: bool
) -> None:
    """The TLS Secrets, a JobQueue on the mutual-TLS server, and 4 jobs waiting in its queue."""
    await kube.create(SECRETS, _tls_secrets(servers))
    await kube.create(JOBQUEUES, _jobqueue(name, queue, "tls-redis", _tls_spec(client_cert=client_cert)))
    await _enqueue(client, queue, 4)


@pytest.fixture
async def tls_client(tls_servers: TlsServers) -> AsyncIterator[AsyncClient]:
    paths = tls_servers.certificates
    tls = TlsOptions(ca_file=str(paths.ca), cert_file=str(paths.client_cert), key_file=str(paths.client_key))
    client = connect(tls_servers.url(tls_servers.mutual_port), tls=tls)
    yield client
    await client.aclose()


async def test_a_jobqueue_with_tls_from_secrets_is_probed_and_its_pods_get_the_files(
    operator: AsyncKube, emulator: RealisticEmulator, tls_servers: TlsServers, tls_client: AsyncClient,
    queue_name: str,
) -> None:  # fmt: skip
    await _tls_jobqueue_with_jobs(operator, tls_servers, tls_client, "t1", queue_name, client_cert=True)
    await wait_for(lambda: _replicas(emulator, "t1") == 2, timeout=30, message="scaled from the backlog")
    deployment = emulator.get_object(DEPLOYMENTS, "default", "t1-worker")
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["JOBQUEUE_REDIS_TLS"] == "true"
    assert env["JOBQUEUE_REDIS_TLS_CA_FILE"] == f"{redis_spec.TLS_MOUNT_DIR}/ca/ca.crt"
    assert env["JOBQUEUE_REDIS_TLS_CERT_FILE"] == f"{redis_spec.TLS_MOUNT_DIR}/client/tls.crt"
    assert env["JOBQUEUE_REDIS_TLS_KEY_FILE"] == f"{redis_spec.TLS_MOUNT_DIR}/client/tls.key"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts[redis_spec.CA_VOLUME]["readOnly"] is True and mounts[redis_spec.CLIENT_VOLUME]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[redis_spec.CLIENT_VOLUME]["secret"]["secretName"] == "tls-redis"
    assert {i["key"] for i in volumes[redis_spec.CLIENT_VOLUME]["secret"]["items"]} == {"tls.crt", "tls.key"}


async def test_a_jobqueue_missing_its_client_certificate_says_so(
    operator: AsyncKube, emulator: RealisticEmulator, tls_servers: TlsServers, tls_client: AsyncClient,
    queue_name: str,
) -> None:  # fmt: skip
    await _tls_jobqueue_with_jobs(operator, tls_servers, tls_client, "t2", queue_name, client_cert=False)

    def degraded() -> Body | None:
        conditions = _status(emulator, "t2").get("conditions", [])
        found = next((c for c in conditions if c["type"] == "Degraded"), {})
        return found if found.get("status") == "True" else None

    condition = await wait_for(degraded, timeout=30, message="Degraded")
    # The server's refusal in the handshake (TLS 1.2, which the suite's mutual-TLS server speaks;
    # with 1.3 it is "certificate required" after it, or a reset): the probe failed, nothing scaled.
    assert condition["reason"] == "ProbeFailed", condition
    message = condition["message"]
    assert any(word in message for word in ("handshake failure", "certificate required", "reset")), condition
    assert _replicas(emulator, "t2") == 0
