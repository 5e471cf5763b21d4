"""Operator benchmark: one probe + decision pass over many JobQueues, and the operator's memory.

* ``pass_ms``: 1,000 queues with a few jobs each on one redis-server; as the operator's control loop
  does on a tick, ``Prober.probe_many`` reads them all in one pipelined round trip, then
  ``policy.decide`` runs for each. Several repetitions; p50 and max.
* ``rss_mb``: resident memory of this process after those passes (prober, clients, 1,000 parsed
  JobQueues and policy states), without kopf.
* ``operator_*``: the real operator (``python -m worker_runtime operator run``, a child process)
  against the tests' Kubernetes API emulator with 1,000 JobQueue objects (``bench/operator_rss.py``):
  its RSS (peak over 10 s, after every object was handled and a few polling intervals passed), its
  idle RSS and the RSS per object, its CPU, the time until all objects were first handled
  (``status.observedGeneration`` and the worker Deployment), its API request rate and control
  passes per second. ``operator_emulator_saturated`` says whether the emulator (one Python thread)
  limited the request rate: then CPU and passes per second are below what an API server that keeps
  up would see, and ``operator_cpu_percent_at_nominal`` scales the CPU per pass to the nominal rate
  (objects / pollingInterval). With ``--objects`` below 1,000 the 1,000-object RSS is extrapolated
  (``operator_rss_mb_1000_extrapolated``). The operator's log goes to ``bench/results/``.

    python -m bench.operator [--queues 1000] [--repeat 10] [--objects 1000 [N ...]]
                             [--out bench/results/operator.json]
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

from bench import operator_rss  # noqa: E402
from worker_runtime import JobSpec, Queue, connect  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402

TARGETS = {
    "pass_p50_ms": ("<=", 250),
    "pass_max_ms": ("<=", 250),
    "rss_mb": ("<=", 150),
    "operator_rss_mb": ("<=", 150),
    "operator_rss_mb_1000_extrapolated": ("<=", 150),
}
# The emulator counts as saturated above this CPU share of its process (one thread, one core) ...
SATURATED_CPU_PERCENT = 85
# ... or when the operator's control passes fall below this share of objects / pollingInterval.
SATURATED_PASS_SHARE = 0.8


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
    observations = (await prober.probe_many(url, [jq.queue_name for jq in queues])).observations
    now = time.time()
    for index, jq in enumerate(queues):
        obs = observations[jq.queue_name]
        decision = policy.decide(jq.spec.scaling, obs, 1, states[index], now, paused=False, concurrency=10)
        states[index] = decision.state
    return (time.perf_counter() - started) * 1000


async def measure(url: str, count: int, repeat: int) -> dict[str, Any]:
    queues = [jobqueue(i) for i in range(count)]
    await fill(url, queues, 3)
    prober = Prober()
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


def operator_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline ``operator_*`` figures, from the run with the most objects."""
    run = max(runs, key=lambda r: r["objects"])
    objects = run["objects"]
    per_object_kb = (run["rss_peak_mb"] - run["rss_idle_mb"]) * 1024 / objects
    nominal = objects / run["polling_interval_s"]
    saturated = (
        run["bench_process_cpu_percent"] >= SATURATED_CPU_PERCENT
        or run["passes_per_s"] < SATURATED_PASS_SHARE * nominal
    )
    out: dict[str, Any] = {
        "operator_objects": objects,
        "operator_handled": run["handled"],
        "operator_rss_mb": run["rss_peak_mb"],
        "operator_rss_idle_mb": run["rss_idle_mb"],
        "operator_rss_per_object_kb": round(per_object_kb, 1),
        "operator_cpu_percent": run["cpu_percent"],
        "operator_handle_all_s": run.get("handle_all_s"),
        "operator_handle_p50_s": run.get("handle_p50_s"),
        "operator_api_requests_per_s": run["api_requests_per_s"],
        "operator_passes_per_s": run["passes_per_s"],
        "operator_passes_nominal_per_s": round(nominal, 1),
        "operator_cpu_ms_per_pass": run["cpu_ms_per_pass"],
        "operator_emulator_saturated": saturated,
    }
    if saturated and run["cpu_ms_per_pass"]:
        out["operator_cpu_percent_at_nominal"] = round(run["cpu_ms_per_pass"] * nominal / 10, 1)
    if objects < 1000:
        out["operator_rss_mb_1000_extrapolated"] = round(run["rss_idle_mb"] + per_object_kb * 1000 / 1024, 1)
    return out


def measure_operator(sizes: list[int], results_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for objects in sizes:
        log = results_dir / f"operator-{objects}.log"
        runs.append(operator_rss.measure_operator(objects, keep_log=log))
        runs[-1]["log_file"] = str(log.relative_to(ROOT)) if log.is_relative_to(ROOT) else str(log)
    return runs


def runs_table(runs: list[dict[str, Any]]) -> Table:
    columns = {
        "objects": "objects",
        "rss_idle_mb": "idle MB",
        "rss_peak_mb": "RSS MB",
        "cpu_percent": "CPU %",
        "passes_per_s": "passes/s",
        "api_requests_per_s": "API req/s",
        "handle_all_s": "handled s",
        "bench_process_cpu_percent": "emu CPU %",
    }
    table = Table(title="operator process runs (details in operator_runs)")
    for title in columns.values():
        table.add_column(title)
    for run in runs:
        table.add_row(*(str(run.get(key, "-")) for key in columns))
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--objects",
        type=int,
        nargs="+",
        default=[1000],
        help="JobQueue objects for the operator process run(s); the largest gives the operator_* figures.",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator.json")
    args = parser.parse_args()
    started = time.monotonic()
    with RedisServer() as server:
        results = asyncio.run(measure(server.url, args.queues, args.repeat))
        results["redis_version"] = server.version()
    runs = measure_operator(sorted(set(args.objects)), args.out.parent)
    results |= operator_figures(runs)
    results["operator_runs"] = runs
    results["bench_s"] = round(time.monotonic() - started, 1)
    results["machine"] = {"python": platform.python_version(), "cpus": psutil.cpu_count()}
    table = Table(
        title=f"operator: one probe + decide pass over {args.queues} JobQueues; "
        f"the operator process with {results['operator_objects']} JobQueue objects"
    )
    for column in ("figure", "value", "target"):
        table.add_column(column)
    for key, value in results.items():
        if isinstance(value, dict | list):
            continue
        op, target = TARGETS.get(key, ("", ""))
        table.add_row(key, str(value), f"{op} {target}".strip())
    console = Console()
    console.print(table)
    console.print(runs_table(runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
