"""Runtime benchmark: enqueue rates, drain rate of one worker process, pickup latency, worker RSS.

The drain is measured for ``async def`` no-op jobs (run on the worker's loop) and again for plain
``def`` ones (run in the worker's child processes): their ratio is the cost of that isolation; and
once more under a rate limit and a running cap too generous to bind: the cost of flow control;
once more with grouped jobs under a generous group rate limit: the cost of group limits;
and the CPU per job once more with circuit breakers by failure ratio configured, every job
succeeding: the cost of counting each outcome in its job name's window.

Pickup is measured on a trickle of single jobs (one every 2 ms) into an idle worker, and again
after 20 ms of silence before each job, beside a PING after the same silence: on this VM a process
woken from an idle vCPU pays the hypervisor's wake-up, so that figure is the platform's floor, not
the runtime's.

CPU per job (worker and redis-server, over a drain of a warm worker) is the figure to compare
across runs on a shared machine: rates move with whatever else runs, CPU per job hardly does.

"One by one" is single-job ``Queue.enqueue`` calls from concurrent callers, as a web app makes
them (concurrent calls share round trips); a single sequential caller is also reported: it is
bounded by the Redis round trip (also reported), whatever the client.

Runs against its own redis-server on a free port (the same binary the tests use) and a real worker
process (`python -m worker_runtime worker bench.apps:app`). Prints a table and writes JSON.

    python -m bench.runtime [--jobs 20000] [--out bench/results/runtime.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker_runtime import JobSpec, Queue, SyncQueue, connect, connect_sync  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402

TARGETS = {
    "enqueue_one_by_one_per_s": (">=", 10_000),
    "enqueue_bulk_per_s": (">=", 50_000),
    "drain_per_s": (">=", 3_300),
    "pickup_p99_ms": ("<=", 1.5),
    "worker_rss_mb": ("<=", 80),
}


def enqueue_sequential(queue: SyncQueue, count: int) -> float:
    """One caller, one enqueue after another: bounded by the round trip, whatever the client."""
    started = time.perf_counter()
    for i in range(count):
        queue.enqueue("noop", {"i": i})
    return count / (time.perf_counter() - started)


def enqueue_one_by_one(redis_url: str, count: int, callers: int) -> float:
    """``callers`` concurrent callers (a web app's requests), each enqueueing single jobs."""

    async def run() -> float:
        client = connect(redis_url)
        queue = Queue("bench", client)
        await queue.enqueue("noop")  # load the scripts

        async def caller() -> None:
            for i in range(count // callers):
                await queue.enqueue("noop", {"i": i})

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - started
        await queue.aclose()
        await client.aclose()
        return (count // callers) * callers / elapsed

    return asyncio.run(run())


def round_trip_ms(client: redis.Redis, count: int = 2000) -> float:
    started = time.perf_counter()
    for _ in range(count):
        client.ping()
    return (time.perf_counter() - started) / count * 1000


def enqueue_bulk(queue: SyncQueue, count: int, name: str = "noop", groups: int = 0) -> float:
    """``groups``: spread the jobs over that many group keys (0: no group)."""
    specs = [JobSpec(name, {"i": i}, group=f"tenant-{i % groups}" if groups else None) for i in range(count)]
    started = time.perf_counter()
    for start in range(0, count, 5000):
        queue.enqueue_many(specs[start : start + 5000])
    return count / (time.perf_counter() - started)


def start_worker(redis_url: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "JOBQUEUE_REDIS_URL": redis_url,
        "JOBQUEUE_CONCURRENCY": str(concurrency),
        "JOBQUEUE_METRICS_PORT": "0",
        "JOBQUEUE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker_runtime", "worker", "bench.apps:app"], env=env, cwd=ROOT
    )


def drain(queue: SyncQueue, total: int, timeout: float = 120.0, before: int = 0) -> float:
    """Jobs/s from the first completion seen (beyond ``before``) to the last (start-up excluded)."""
    deadline = time.monotonic() + timeout
    first_t, first_n = 0.0, 0
    while time.monotonic() < deadline:
        done = queue.stats().completed_total
        now = time.perf_counter()
        if done > before and not first_t:
            first_t, first_n = now, done
        if done >= total:
            return (done - first_n) / (now - first_t)
        time.sleep(0.005)
    raise TimeoutError(f"drain did not finish within {timeout}s")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def cpu_per_job(
    queue: SyncQueue, worker: subprocess.Popen[bytes], server: RedisServer, count: int, before: int
) -> dict[str, float]:
    """CPU microseconds per job in the (warm) worker and in redis-server over one more drain.

    Unlike a rate, CPU per job hardly moves when other processes share the cores, so it is the
    figure to compare across runs on a busy machine. Redis's share of the enqueue is taken out.
    """
    assert server.process is not None
    worker_before, redis_before = cpu_seconds(worker.pid), cpu_seconds(server.process.pid)
    enqueue_bulk(queue, count)
    redis_enqueue = cpu_seconds(server.process.pid) - redis_before
    drain(queue, before + count, before=before)
    worker_cpu = cpu_seconds(worker.pid) - worker_before
    redis_cpu = cpu_seconds(server.process.pid) - redis_before - redis_enqueue
    return {
        "worker_cpu_us_per_job": worker_cpu / count * 1e6,
        "redis_cpu_us_per_job": redis_cpu / count * 1e6,
    }


def breaker_cpu_per_job(
    queue: SyncQueue, worker: subprocess.Popen[bytes], server: RedisServer, count: int
) -> dict[str, float]:
    """CPU per job with circuit breakers by failure ratio configured and every job succeeding (each
    completion counts in its name's window), beside drains without breakers just before and after
    each (the CPU per job of a drain drifts with what the queue's sets hold and what else runs)."""
    without: list[dict[str, float]] = []
    with_ratio: list[dict[str, float]] = []
    for _ in range(2):
        without.append(cpu_per_job(queue, worker, server, count, before=queue.stats().completed_total))
        queue.set_breaker(None, 30.0, failure_ratio=0.5, window_seconds=60.0, min_attempts=10)
        try:
            with_ratio.append(cpu_per_job(queue, worker, server, count, before=queue.stats().completed_total))
        finally:
            queue.set_breaker(None)
    without.append(cpu_per_job(queue, worker, server, count, before=queue.stats().completed_total))
    found: dict[str, float] = {}
    for side in ("worker", "redis"):
        key = f"{side}_cpu_us_per_job"
        base = statistics.mean(d[key] for d in without)
        found[f"breaker_baseline_{key}"] = base
        found[f"breaker_{key}"] = statistics.mean(d[key] for d in with_ratio)
        found[f"breaker_{side}_cpu_ratio"] = found[f"breaker_{key}"] / base
    return found


def pickup_latencies(queue: SyncQueue, samples: int, gap: float) -> list[float]:
    """A trickle of single jobs into an idle worker: ms from the enqueue call to the handler's start.

    One job every ``gap`` seconds, so the worker is back blocking on the marker before the next one
    comes. The handler returns its own start time; results are read only after the run, so the
    bench's reads never compete with a pickup for a core or for Redis.
    """
    completed_before = queue.stats().completed_total
    sent = []
    for _ in range(samples):
        before = time.time()
        sent.append((queue.enqueue("stamp").id, before))
        time.sleep(gap)
    deadline = time.monotonic() + 30
    while queue.stats().completed_total < completed_before + samples:
        if time.monotonic() > deadline:
            raise TimeoutError("pickup jobs did not complete within 30 s")
        time.sleep(0.01)
    return [(float(queue.get_job(job_id).result) - before) * 1000 for job_id, before in sent]


def round_trips_after_idle_ms(client: redis.Redis, count: int, idle: float) -> list[float]:
    """PING round trips after ``idle`` seconds of silence: on a VM, a process woken from a halted
    vCPU pays the hypervisor's wake-up, whatever it runs. A floor for pickups after long idleness."""
    times = []
    for _ in range(count):
        time.sleep(idle)
        started = time.perf_counter()
        client.ping()
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def run(jobs: int, concurrency: int, samples: int, callers: int) -> dict[str, Any]:
    with RedisServer() as server:
        client = connect_sync(server.url)
        queue = SyncQueue("bench", client)
        results: dict[str, Any] = {"redis_version": server.version()}
        results["redis_ping_round_trip_ms"] = round_trip_ms(client)
        results["enqueue_sequential_per_s"] = enqueue_sequential(queue, 5_000)
        results["enqueue_one_by_one_per_s"] = enqueue_one_by_one(server.url, 10_000, callers)
        client.delete(*client.keys("jq:{bench}:*"))
        results["enqueue_bulk_per_s"] = enqueue_bulk(queue, jobs)
        worker = start_worker(server.url, concurrency)
        try:
            results["drain_per_s"] = drain(queue, jobs)
            results["worker_rss_mb"] = psutil.Process(worker.pid).memory_info().rss / 2**20
            done = queue.stats().completed_total
            enqueue_bulk(queue, jobs // 4, name="noop_sync")
            results["drain_def_per_s"] = drain(queue, done + jobs // 4, before=done)
            results["def_cost_per_job_ms"] = 1000 / results["drain_def_per_s"] - 1000 / results["drain_per_s"]
            results.update(
                cpu_per_job(queue, worker, server, jobs // 2, before=queue.stats().completed_total)
            )
            latencies = pickup_latencies(queue, samples, gap=0.002)
            results["pickup_p50_ms"] = percentile(latencies, 0.50)
            results["pickup_p99_ms"] = percentile(latencies, 0.99)
            # The same after 20 ms of silence each: every process on the path wakes from idle.
            latencies = pickup_latencies(queue, samples // 5, gap=0.020)
            results["pickup_after_idle_p50_ms"] = percentile(latencies, 0.50)
            results["pickup_after_idle_p99_ms"] = percentile(latencies, 0.99)
            pings = round_trips_after_idle_ms(client, samples // 5, idle=0.020)
            results["redis_ping_after_idle_p50_ms"] = percentile(pings, 0.50)
            results["redis_ping_after_idle_p99_ms"] = percentile(pings, 0.99)
            # The same drain under a generous rate limit and running cap, which never bind: what
            # flow control costs per claim (and per ack, which wakes workers a cap holds).
            queue.set_rate_limit(1_000_000, 1.0)
            queue.set_max_running(1_000_000)
            done = queue.stats().completed_total
            enqueue_bulk(queue, jobs)
            redis_before = cpu_seconds(server.process.pid)
            results["drain_limited_per_s"] = drain(queue, done + jobs, before=done)
            results["redis_cpu_us_per_job_limited"] = (
                (cpu_seconds(server.process.pid) - redis_before) / jobs * 1e6
            )
            results["limits_cost_per_job_us"] = (
                1e6 / results["drain_limited_per_s"] - 1e6 / results["drain_per_s"]
            )
            # Grouped jobs (100 groups) under a group limit too generous to bind: what reading
            # each job's group and counting its window costs per claim.
            queue.set_group_rate_limit(1_000_000, 1.0)
            done = queue.stats().completed_total
            enqueue_bulk(queue, jobs, groups=100)
            redis_before = cpu_seconds(server.process.pid)
            results["drain_grouped_per_s"] = drain(queue, done + jobs, before=done)
            results["redis_cpu_us_per_job_grouped"] = (
                (cpu_seconds(server.process.pid) - redis_before) / jobs * 1e6
            )
            results["group_limit_cost_per_job_us"] = (
                1e6 / results["drain_grouped_per_s"] - 1e6 / results["drain_limited_per_s"]
            )
            queue.set_rate_limit(None)
            queue.set_max_running(None)
            queue.set_group_rate_limit(None)
            results.update(breaker_cpu_per_job(queue, worker, server, jobs // 2))
            results["worker_rss_mb"] = max(
                results["worker_rss_mb"], psutil.Process(worker.pid).memory_info().rss / 2**20
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            results["worker_exit_code"] = worker.wait(30)
        client.close()
    return results


def report(results: dict[str, Any], out: Path, params: dict[str, Any]) -> bool:
    table = Table("figure", "value", "target", "met", title="jobqueue runtime benchmark")
    verdicts = {}
    for name, value in results.items():
        target = TARGETS.get(name)
        if target is None:
            table.add_row(name, str(value) if not isinstance(value, float) else f"{value:,.2f}", "", "")
            continue
        op, bound = target
        met = value >= bound if op == ">=" else value <= bound
        verdicts[name] = met
        table.add_row(name, f"{value:,.2f}", f"{op} {bound:,}", "yes" if met else "NO")
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "runtime",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "params": params,
        "results": results,
        "targets": {k: {"op": op, "bound": b, "met": verdicts.get(k)} for k, (op, b) in TARGETS.items()},
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    return all(verdicts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=32, help="concurrent one-by-one enqueue callers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runtime.json")
    args = parser.parse_args()
    params = vars(args) | {"out": str(args.out)}
    ok = report(run(args.jobs, args.concurrency, args.samples, args.callers), args.out, params)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
