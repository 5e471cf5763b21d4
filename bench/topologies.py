"""Redis Cluster against one server, in the same run: the probe of 1,000 queues, and a drain.

The probe reads 1,000 queues spread over a 3-primary cluster (every queue holding a job, so every
script has work) with ``worker_runtime.probe.probe_queues``, as the operator does each tick; the
pipelines the cluster client sends to each node are counted (one per node is the design), and the
time of a probe is compared with the same probe on one server and with a bare PING round trip.
The drain is one worker process (``bench.apps:app``, ``async def`` no-op jobs) on one queue, on one
server and then on the cluster: a queue lives in one slot, so the cluster adds the client's routing,
not capacity; its ratio to the standalone drain is that cost.

Both run from the tests' redis-server binary on loopback (the cluster without replicas: a replica
only adds the replication stream here). Prints a table and writes JSON.

    python -m bench.topologies [--queues 1000] [--probes 30] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio.cluster as async_cluster
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.runtime import drain, enqueue_bulk, start_worker  # noqa: E402
from tests.support.topologies import ClusterSet  # noqa: E402
from worker_runtime import Queue, SyncQueue, connect, connect_sync, probe_queues  # noqa: E402
from worker_runtime.connection import AsyncClient  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402
from worker_runtime.keys import QueueKeys  # noqa: E402


def _count_pipelines() -> Counter[str]:
    """Pipelines sent per cluster node from now on (redis-py's per-node pipeline call, wrapped)."""
    sent: Counter[str] = Counter()
    real = async_cluster.ClusterNode.execute_pipeline

    async def counted(node: async_cluster.ClusterNode, commands: Any) -> bool:
        sent[node.name] += 1
        return await real(node, commands)

    async_cluster.ClusterNode.execute_pipeline = counted  # type: ignore[method-assign]
    return sent


async def _seed(client: AsyncClient, names: list[str]) -> None:
    for start in range(0, len(names), 100):
        queues = [Queue(name, client) for name in names[start : start + 100]]
        await asyncio.gather(*(q.enqueue("noop", {"i": 0}) for q in queues))
        for queue in queues:
            await queue.aclose()


async def _probe_ms(client: AsyncClient, names: list[str], probes: int) -> list[float]:
    await probe_queues(client, names)  # warm: scripts cached, connections open
    times = []
    for _ in range(probes):
        started = time.perf_counter()
        observed = await probe_queues(client, names)
        times.append((time.perf_counter() - started) * 1000)
        assert len(observed) == len(names) and all(o.waiting == 1 for o in observed.values())
    return times


async def _ping_ms(client: AsyncClient, count: int = 500) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await client.ping()
    return (time.perf_counter() - started) / count * 1000


async def probe_figures(standalone_url: str, cluster_url: str, queues: int, probes: int) -> dict[str, Any]:
    names = [f"probe-{i}" for i in range(queues)]
    results: dict[str, Any] = {}
    plain = connect(standalone_url)
    cluster = connect(cluster_url)
    assert isinstance(cluster, async_cluster.RedisCluster)
    try:
        await cluster.initialize()
        await _seed(plain, names)
        await _seed(cluster, names)
        owners = [cluster.get_node_from_key(QueueKeys.for_queue(n).waiting) for n in names]
        spread = Counter(node.name for node in owners if node is not None)
        results["cluster_primaries"] = len(cluster.get_primaries())
        results["queues_per_primary"] = sorted(spread.values())
        results["ping_round_trip_ms"] = await _ping_ms(plain)
        standalone = await _probe_ms(plain, names, probes)
        sent = _count_pipelines()
        clustered = await _probe_ms(cluster, names, probes)
        results["cluster_pipelines_per_node_per_probe"] = sorted(
            count / (probes + 1) for count in sent.values()
        )
        results["probe_standalone_ms_p50"] = statistics.median(standalone)
        results["probe_cluster_ms_p50"] = statistics.median(clustered)
        results["probe_cluster_over_standalone"] = (
            results["probe_cluster_ms_p50"] / results["probe_standalone_ms_p50"]
        )
        results["probe_standalone_in_pings"] = (
            results["probe_standalone_ms_p50"] / results["ping_round_trip_ms"]
        )
    finally:
        await plain.aclose()
        await cluster.aclose()
    return results


def drain_rate(url: str, jobs: int, concurrency: int) -> float:
    client = connect_sync(url)
    queue = SyncQueue("bench", client)
    enqueue_bulk(queue, jobs)
    worker = start_worker(url, concurrency)
    try:
        return drain(queue, jobs)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        client.close()


def run(queues: int, probes: int, jobs: int, concurrency: int) -> dict[str, Any]:
    with RedisServer() as server, ClusterSet(masters=3, replicas=0) as cluster:
        results: dict[str, Any] = {"redis_version": server.version()}
        results |= asyncio.run(probe_figures(server.url, cluster.url, queues, probes))
        results["drain_standalone_per_s"] = drain_rate(server.url, jobs, concurrency)
        results["drain_cluster_per_s"] = drain_rate(cluster.url, jobs, concurrency)
        results["drain_cluster_over_standalone"] = (
            results["drain_cluster_per_s"] / results["drain_standalone_per_s"]
        )
    return results


def report(results: dict[str, Any], out: Path, params: dict[str, Any]) -> None:
    table = Table("figure", "value", title="jobqueue on a Redis Cluster vs one server (same run)")
    for name, value in results.items():
        table.add_row(name, f"{value:,.2f}" if isinstance(value, float) else str(value))
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    payload = {"benchmark": "topologies", "machine": machine, "params": params, "results": results}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topologies.json")
    args = parser.parse_args()
    params = {
        "queues": args.queues,
        "probes": args.probes,
        "jobs": args.jobs,
        "concurrency": args.concurrency,
    }
    report(run(args.queues, args.probes, args.jobs, args.concurrency), args.out, params)


if __name__ == "__main__":
    main()
