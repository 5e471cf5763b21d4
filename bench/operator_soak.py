"""Operator soak: the real operator over many JobQueues for a long run; are pass time and memory flat?

A redis-server, the tests' Kubernetes API emulator (in a thread of this process, with the product
CRD and a Secret holding the Redis URL) and the real operator entry point (``python -m
worker_runtime operator run``, a child process) serving ``--jobqueues`` JobQueues (default 100, each
with its own queue, pollingInterval 2 s). While it runs, traffic keeps every part of the operator
busy: every ``--burst-every`` seconds a rotating tenth of the queues gets jobs and the tenth before
it is drained, so fleets scale up and down (scale patches, status writes, Events), and a stand-in
for the Deployment controller sets each Deployment's ``status`` to its ``spec.replicas``.

Every minute it samples:

* ``pass_p50_ms``/``pass_p99_ms``/``pass_mean_ms``: the operator's control passes of that minute
  (its own ``jobqueue_decision_duration_seconds`` histogram; quantiles interpolated within a
  bucket, as Prometheus' ``histogram_quantile`` does, so p99 is only as fine as the buckets) and
  ``passes``, how many ran;
* ``rss_mb``: the operator's resident memory (mean of samples over the minute) and ``cpu_percent``;
* ``cpu_ms_per_pass``: the operator's CPU time over the minute divided by its passes, which the
  machine's other load sways far less than wall-clock pass times;
* ``get_p50_ms``/``list_p50_ms``: a GET of one Deployment and a LIST of the namespace's Deployments
  from this process, and ``redis_ping_p50_ms``, a bare Redis round trip: the same-run baselines
  of the API server's and the machine's own speed (``load1``: the host's 1-minute load average);
* the emulator's requests served, its Events, and this process's RSS.

The summary compares the first and last minutes (ratios last/first). The figures are printed as
they come and written to ``--out`` (JSON, rewritten every minute).

    python -m bench.operator_soak [--minutes 30] [--jobqueues 100] [--out bench/results/operator_soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis as sync_redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from bench import operator_rss  # noqa: E402
from worker_runtime import JobSpec  # noqa: E402
from worker_runtime.embedded_redis import RedisServer  # noqa: E402
from worker_runtime.keys import QueueKeys  # noqa: E402
from worker_runtime.queue import SyncQueue  # noqa: E402

HISTOGRAM = "jobqueue_decision_duration_seconds"
NAMESPACE = operator_rss.NAMESPACE


def scrape_histogram(port: int) -> dict[str, Any]:
    """The cumulative buckets, count and sum of the operator's pass-time histogram."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    out: dict[str, Any] = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{HISTOGRAM}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{HISTOGRAM}_count":
                out["count"] = sample.value
            elif sample.name == f"{HISTOGRAM}_sum":
                out["sum"] = sample.value
    out["buckets"] = dict(sorted(buckets.items()))
    return out


def quantile(q: float, before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """``histogram_quantile`` over the increase between two scrapes (seconds), None without passes."""
    bounds: list[float] = list(after["buckets"])
    counts: list[float] = [after["buckets"][b] - before["buckets"].get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower


class Traffic:
    """Bursts of jobs on a rotating tenth of the queues, and the Deployment controller's status."""

    def __init__(self, emu: Any, redis_url: str, names: list[str], burst_every: float) -> None:
        self.emu = emu
        self.names = names
        self.burst_every = burst_every
        self.client = sync_redis.Redis.from_url(redis_url)
        self.stop = threading.Event()
        self.bursts = 0
        self.status_writes = 0
        self._thread = threading.Thread(target=self._run, name="soak-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        tenth = max(1, len(self.names) // 10)
        next_burst = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() >= next_burst:
                start = (self.bursts * tenth) % len(self.names)
                for name in self.names[start : start + tenth]:
                    SyncQueue(name, self.client).enqueue_many([JobSpec("work", {"n": n}) for n in range(6)])
                drained = self.names[start - tenth : start] if start else self.names[-tenth:]
                for name in drained:
                    keys = QueueKeys.for_queue(name)
                    self.client.delete(keys.waiting, keys.ready_since)
                self.bursts += 1
                next_burst += self.burst_every
            self.status_writes += self.emu.call(self._settle_deployments)
            self.stop.wait(2.0)

    def _settle_deployments(self) -> int:
        """What the Deployment controller would report once the pods run: status follows spec."""
        from tests.support.kube_client import DEPLOYMENTS

        emulator = self.emu.emulator
        written = 0
        for (resource, namespace, name), obj in list(emulator._objects.items()):
            if resource != DEPLOYMENTS or obj.deleted:
                continue
            body = obj.raw
            wanted = int((body.get("spec") or {}).get("replicas") or 0)
            status = body.get("status") or {}
            if status.get("readyReplicas", 0) == wanted and status.get("replicas", 0) == wanted:
                continue
            fields = {"replicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted}
            fields["updatedReplicas"] = wanted
            emulator.patch_object(DEPLOYMENTS, namespace, name, {"status": fields}, subresource="status")
            written += 1
        return written


def redis_ping_ms(url: str, count: int = 20) -> float:
    """p50 milliseconds of a bare Redis round trip (PING)."""
    client = sync_redis.Redis.from_url(url)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        client.close()
    return round(statistics.median(samples), 3)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def timed_requests(url: str, count: int = 10) -> float:
    """p50 milliseconds of ``count`` GETs of ``url``."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def emulator_counts(emu: Any) -> dict[str, int]:
    from tests.support.kube_client import EVENTS

    def count() -> dict[str, int]:
        emulator = emu.emulator
        events = sum(1 for (r, _, _), o in emulator._objects.items() if r == EVENTS and not o.deleted)
        served = getattr(emulator, "requests_served", None)
        return {
            "requests_served": served if served is not None else len(emulator._requests),
            "events": events,
            "objects": len(emulator._objects),
        }

    result: dict[str, int] = emu.call(count)
    return result


def minute_row(
    minute: int,
    window: dict[str, float],
    before: dict[str, Any],
    after: dict[str, Any],
    api: dict[str, float],
    counts: dict[str, int],
    bench_rss: float,
) -> dict[str, Any]:
    passes = after["count"] - before["count"]
    p50, p99 = quantile(0.5, before, after), quantile(0.99, before, after)
    cpu = window["operator_cpu_percent"]
    return {
        "minute": minute,
        "passes": int(passes),
        "pass_p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "pass_p99_ms": None if p99 is None else round(p99 * 1000, 2),
        "pass_mean_ms": round(1000 * (after["sum"] - before["sum"]) / passes, 2) if passes else None,
        "cpu_ms_per_pass": round(10 * cpu * window["elapsed_s"] / passes, 3) if passes else None,
        "rss_mb": round(window["rss_mean_mb"], 1),
        "rss_peak_mb": round(window["rss_peak_mb"], 1),
        "cpu_percent": round(cpu, 1),
        "emulator_cpu_percent": round(window["bench_cpu_percent"], 1),
        **api,
        **counts,
        "bench_rss_mb": round(bench_rss, 1),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """First and last minutes side by side, with last/first ratios."""
    first, last = rows[0], rows[-1]
    out: dict[str, Any] = {"first_minute": first["minute"], "last_minute": last["minute"]}
    for key in (
        "pass_p50_ms",
        "pass_p99_ms",
        "pass_mean_ms",
        "cpu_ms_per_pass",
        "rss_mb",
        "get_p50_ms",
        "list_p50_ms",
        "redis_ping_p50_ms",
        "load1",
        "bench_rss_mb",
    ):
        a, b = first.get(key), last.get(key)
        out[key] = {"first": a, "last": b, "ratio": round(b / a, 2) if a and b is not None else None}
    rest = rows[1:] or rows  # the first minute holds the start-up (every JobQueue created)
    for key in ("pass_p50_ms", "cpu_ms_per_pass", "rss_mb"):
        values = sorted(r[key] for r in rest if r.get(key) is not None)
        if values:
            out[f"{key}_median_after_minute_1"] = values[len(values) // 2]
    values = [r["rss_mb"] for r in rows]
    out["rss_mb_range"] = [min(values), max(values)]
    p50s = [r["pass_p50_ms"] for r in rows if r["pass_p50_ms"] is not None]
    if p50s:
        out["pass_p50_ms_range"] = [min(p50s), max(p50s)]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import kubeconfig as kubeconfig_mod
    from tests.support.emulator_thread import EmulatorThread
    from tests.support.kube_client import JOBQUEUES, SECRETS, SyncKube, jobqueue_body, secret_body

    names = [f"soak-{i:03d}" for i in range(args.jobqueues)]
    console = Console()
    results: dict[str, Any] = {
        "jobqueues": args.jobqueues,
        "minutes": args.minutes,
        "polling_interval_s": operator_rss.POLLING_INTERVAL,
        "burst_every_s": args.burst_every,
        "machine": {"python": platform.python_version(), "cpus": psutil.cpu_count()},
        "rows": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="jobqueue-soak-") as tmp,
        RedisServer() as redis_server,
        EmulatorThread() as emu,
    ):
        emu.call(emu.emulator.register_crd, operator_rss.CRD_PATH)
        kube = SyncKube(emu.url)
        kube.create(SECRETS, secret_body("redis", {"url": redis_server.url}), namespace=NAMESPACE)
        kubeconfig = kubeconfig_mod.write(Path(tmp) / "kubeconfig", emu.url)
        port = operator_rss.free_port()
        log = Path(tmp) / "operator.log"
        shutdown: dict[str, Any] = {}
        traffic = Traffic(emu, redis_server.url, names, args.burst_every)
        try:
            with operator_rss.operator_process(kubeconfig, port, log, shutdown) as process:
                operator = psutil.Process(process.pid)
                sampler = operator_rss.Sampler(operator, None)
                operator_rss.wait_until(
                    lambda: emu.call(emu.emulator.watchers, JOBQUEUES) > 0, 30, 0.1, "operator watching"
                )
                for name in names:
                    body = jobqueue_body(name, operator_rss.jobqueue_spec(name))
                    kube.create(JOBQUEUES, body, namespace=NAMESPACE)
                traffic.start()
                deployment = f"{emu.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
                before = scrape_histogram(port)
                for minute in range(1, args.minutes + 1):
                    window = sampler.run(60.0 - 1.0, interval=1.0)
                    if process.poll() is not None:
                        raise RuntimeError(f"the operator exited with {process.returncode}")
                    after = scrape_histogram(port)
                    api = {
                        "get_p50_ms": timed_requests(f"{deployment}/{names[0]}-worker"),
                        "list_p50_ms": timed_requests(deployment, 5),
                        "redis_ping_p50_ms": redis_ping_ms(redis_server.url),
                        "load1": load1(),
                    }
                    bench_rss = psutil.Process().memory_info().rss / 2**20
                    row = minute_row(minute, window, before, after, api, emulator_counts(emu), bench_rss)
                    before = after
                    results["rows"].append(row)
                    console.print(row)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=2) + "\n")
        finally:
            traffic.close()
            results["bursts"] = traffic.bursts
            results["deployment_status_writes"] = traffic.status_writes
            results |= shutdown
            if log.exists():
                results["log"] = operator_rss.log_summary(log)
    results["summary"] = summary(results["rows"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=30, help="length of the run (default 30)")
    parser.add_argument("--jobqueues", type=int, default=100)
    parser.add_argument("--burst-every", type=float, default=20.0, help="seconds between bursts of jobs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "operator_soak.json")
    args = parser.parse_args()
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    console = Console()
    console.print(results["summary"])
    console.print({k: v for k, v in results.items() if k in ("log", "exit_code", "shutdown_s")})


if __name__ == "__main__":
    main()
