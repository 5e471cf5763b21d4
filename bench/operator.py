"""Operator benchmark: one probe + decision pass over many JobQueues, and the operator's memory.

* ``pass_ms``: 1,000 queues with a few jobs each on one redis-server; every queue's ``Prober.probe``
  is called concurrently (as 1,000 kopf timers would), the batching prober answers them with one
  pipelined round trip, then ``policy.decide`` runs for each. Several repetitions; p50 and max.
* ``rss_mb``: resident memory of this process after those passes (prober, clients, 1,000 parsed
  JobQueues and policy states). The full operator with 1,000 JobQueue objects in the emulator was
  not measured here (see docs/operator.md); kopf's own per-object memory comes on top.

    python -m bench.operator [--queues 1000] [--repeat 10] [--out bench/results/operator.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from jobqueue_operator import policy, spec  # noqa: E402
from jobqueue_operator.prober import Prober  # noqa: E402

from worker_runtime import JobSpec, Queue, connect  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402

TARGETS = {"pass_p50_ms": ("<=", 250), "pass_max_ms": ("<=", 250), "rss_mb": ("<=", 150)}


def jobqueue(index: int) -> spec.JobQueue:
    return spec.parse_jobqueue(
        {
            "metadata": {"name": f"q{index}", "namespace": "default", "uid": str(index)},
            "spec": {
                "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
                "workers": {"template": {"spec": {"containers": [{"name": "w", "image": "w"}]}}},
                "scaling": {"targets": {"backlogPerReplica": 5, "maxOldestAge": 30}},
            },
        }
    )


async def fill(url: str, queues: list[spec.JobQueue], jobs: int) -> None:
    client = connect(url)
    for jq in queues:
        queue = Queue(jq.queue_name, client)
        await queue.enqueue_many([JobSpec("work", {"n": n}) for n in range(jobs)])
    await client.aclose()


async def one_pass(
    prober: Prober, url: str, queues: list[spec.JobQueue], states: list[policy.PolicyState]
) -> float:
    started = time.perf_counter()
    observations = await asyncio.gather(*(prober.probe(url, jq.queue_name) for jq in queues))
    now = time.time()
    for index, (jq, obs) in enumerate(zip(queues, observations, strict=True)):
        decision = policy.decide(jq.spec.scaling, obs, 1, states[index], now, paused=False, concurrency=10)
        states[index] = decision.state
    return (time.perf_counter() - started) * 1000


async def measure(url: str, count: int, repeat: int) -> dict[str, Any]:
    queues = [jobqueue(i) for i in range(count)]
    await fill(url, queues, 3)
    prober = Prober(window=0.005)
    states = [policy.PolicyState() for _ in queues]
    await one_pass(prober, url, queues, states)  # warm-up: connection, script load
    rounds_before = prober.round_trips
    timings = [await one_pass(prober, url, queues, states) for _ in range(repeat)]
    round_trips = (prober.round_trips - rounds_before) / repeat
    await prober.close()
    return {
        "queues": count,
        "repetitions": repeat,
        "pass_p50_ms": round(statistics.median(timings), 1),
        "pass_max_ms": round(max(timings), 1),
        "round_trips_per_pass": round_trips,
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    args = parser.parse_args()
    with RedisServer() as server:
        results = asyncio.run(measure(server.url, args.queues, args.repeat))
        results["redis_version"] = server.version()
    results["machine"] = {"python": platform.python_version(), "cpus": psutil.cpu_count()}
    table = Table(title=f"operator: one probe + decide pass over {args.queues} JobQueues")
    for column in ("figure", "value", "target"):
        table.add_column(column)
    for key, value in results.items():
        if key == "machine":
            continue
        op, target = TARGETS.get(key, ("", ""))
        table.add_row(key, str(value), f"{op} {target}".strip())
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
