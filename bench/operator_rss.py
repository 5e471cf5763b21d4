"""The real operator process with many JobQueues: its RSS, its CPU and how long it takes to handle them.

A redis-server, the Kubernetes API emulator of the tests (in a thread of this process, with the
product CRD and a Secret holding the Redis URL) and ``python -m worker_runtime operator run
--namespace default --standalone`` as a subprocess pointed at the emulator by a kubeconfig. Then:

1. the operator's idle RSS (no JobQueue yet);
2. ``objects`` JobQueues are created, each with its own queue (every ``jobs_every``-th one has
   ``jobs`` jobs waiting); the time until every one has ``status.observedGeneration`` and its
   ``<name>-worker`` Deployment is the "time to handle all";
3. after a few polling intervals, the operator's RSS (peak of samples) and CPU (psutil, over the
   sampling window), the API requests it makes (counted by the emulator), its control passes per
   second (its own /metrics), its log lines per second, and what the log says (errors, warnings,
   tracebacks; the whole log is kept with ``keep_log``).

The emulator serves from one thread of this process, so this process's CPU is reported too: near
100 % (one core), the emulator limits the operator's request rate, and the operator's CPU and
passes per second are below what it would do against an API server that keeps up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import redis as sync_redis
from prometheus_client.parser import text_string_to_metric_families

from worker_runtime import JobSpec
from worker_runtime.embedded_redis import RedisServer
from worker_runtime.queue import SyncQueue

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "jobqueues.jobqueue.dev.yaml"
NAMESPACE = "default"
POLLING_INTERVAL = 2  # the CRD's default pollingInterval
LOG_LEVELS = re.compile(r"\b(ERROR|WARNING|CRITICAL)\b")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jobqueue_spec(queue: str, polling_interval: int = POLLING_INTERVAL) -> dict[str, Any]:
    """A JobQueue as a user would write it: its queue, a worker template, a target; defaults elsewhere."""
    return {
        "queue": {"name": queue, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
        "workers": {"template": {"spec": {"containers": [{"name": "worker", "image": "example/worker:1"}]}}},
        "scaling": {
            "maxReplicas": 5,
            "pollingInterval": polling_interval,
            "targets": {"backlogPerReplica": 5},
        },
    }


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def scrape(port: int) -> dict[str, float]:
    """Totals of the operator's control-pass histogram and probe-error counter."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (
                "jobqueue_decision_duration_seconds_count",
                "jobqueue_decision_duration_seconds_sum",
                "jobqueue_probe_errors_total",
                "jobqueue_scale_events_total",
            ):
                totals[sample.name] += sample.value
    return dict(totals)


def request_kind(request: Any) -> str:
    """``GET deployments``, ``PATCH jobqueues/status``, ``WATCH jobqueues``... of one logged request."""
    resource = request.resource
    plural = resource.plural if resource is not None and resource.plural else "-"
    sub = f"/{request.subresource}" if request.subresource else ""
    verb = "WATCH" if str(request.action).lower().endswith("watch") else str(request.method).split(".")[-1]
    return f"{verb.upper()} {plural}{sub}"


def log_summary(path: Path, limit: int = 5) -> dict[str, Any]:
    """Counts of ERROR/WARNING lines and tracebacks in the operator's log, with a few distinct examples."""
    counts: collections.Counter[str] = collections.Counter()
    examples: dict[str, None] = {}
    for line in path.read_text(errors="replace").splitlines():
        if "Traceback" in line:
            counts["tracebacks"] += 1
        match = LOG_LEVELS.search(line)
        if match is None:
            continue
        counts[match.group(1).lower()] += 1
        # Without the timestamp and the object name, so repeats of one problem collapse.
        text = re.sub(r"bench-\d+", "bench-N", line.split("]", 1)[-1].strip())[:200]
        if len(examples) < limit:
            examples.setdefault(text)
    return {"lines": dict(counts), "examples": list(examples)}


def read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as file:
        file.seek(offset)
        return file.read()


class _CountingLog(list[Any]):
    """kmock's request log, holding only the request being served; the others are only counted."""

    def __init__(self, counts: collections.Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def append(self, request: Any) -> None:
        self.counts[request_kind(request)] += 1
        self.clear()
        super().append(request)


class RequestTally:
    """Counts the emulator's requests by kind, keeping kmock's request logs short.

    kmock matches each request against every request logged so far (its views are filters over
    the log), so its cost per request grows with the number served: at the hundreds of requests per
    second of 1,000 JobQueues the emulator becomes CPU-bound within a minute and stops answering.
    The bench needs only the counts: the server's log keeps the request being matched (it is
    appended and matched with no await in between), the reactions' logs are emptied every second.
    """

    def __init__(self, emu: Any, interval: float = 1.0) -> None:
        self.emu = emu
        self.interval = interval
        self.counts: collections.Counter[str] = collections.Counter()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.emu.call(self._start)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):
            self.emu.call(self._cancel)

    def snapshot(self) -> collections.Counter[str]:
        """The counts so far (read in the emulator's loop)."""
        return self.emu.call(collections.Counter, self.counts)

    def _start(self) -> None:
        emulator = self.emu.emulator
        self.counts.update(request_kind(r) for r in emulator._requests)
        emulator._requests = _CountingLog(self.counts)
        self._tick()

    def _tick(self) -> None:
        for payload in self.emu.emulator._payloads:
            payload._requests.clear()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class Sampler:
    """RSS samples (peak, mean) and CPU use of the operator, this process and redis-server over a window."""

    def __init__(self, operator: psutil.Process, redis_server: psutil.Process | None) -> None:
        self.processes = {"operator": operator, "bench": psutil.Process(), "redis": redis_server}

    def run(self, seconds: float, interval: float = 0.2) -> dict[str, float]:
        cpu = {name: p.cpu_times() for name, p in self.processes.items() if p is not None}
        started = time.monotonic()
        rss: list[int] = []
        while time.monotonic() - started < seconds:
            rss.append(self.processes["operator"].memory_info().rss)  # type: ignore[union-attr]
            time.sleep(interval)
        elapsed = time.monotonic() - started
        out = {
            "rss_peak_mb": max(rss) / 2**20,
            "rss_mean_mb": sum(rss) / len(rss) / 2**20,
            "elapsed_s": elapsed,
        }
        for name, before in cpu.items():
            after = self.processes[name].cpu_times()  # type: ignore[union-attr]
            used = (after.user + after.system) - (before.user + before.system)
            out[f"{name}_cpu_percent"] = 100 * used / elapsed
        return out


@contextlib.contextmanager
def operator_process(
    kubeconfig: Path, metrics_port: int, log: Path, shutdown: dict[str, Any]
) -> Iterator[subprocess.Popen[bytes]]:
    """The real operator entry point as a child; SIGTERM (then SIGKILL) on the way out, whatever happens.

    ``shutdown`` receives how long SIGTERM took and the exit code.
    """
    from tests.support import operator_cli

    cmd = operator_cli.command("--standalone", "--metrics-port", str(metrics_port), namespace=NAMESPACE)
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    shutdown["killed"] = True
                shutdown["shutdown_s"] = round(time.monotonic() - started, 2)
            shutdown["exit_code"] = process.returncode


def enqueue(redis_url: str, queues: list[str], jobs: int) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    try:
        for name in queues:
            SyncQueue(name, client).enqueue_many([JobSpec("work", {"n": n}) for n in range(jobs)])
    finally:
        client.close()


def measure_operator(
    objects: int,
    *,
    jobs_every: int = 10,
    jobs: int = 5,
    polling_interval: int = POLLING_INTERVAL,
    handle_timeout: float = 90.0,
    settle: float = 3 * POLLING_INTERVAL,
    sample: float = 10.0,
    keep_log: Path | None = None,
) -> dict[str, Any]:
    """Run the operator over ``objects`` JobQueues and return its figures (see the module docstring)."""
    # Imported here: the emulator (kmock, kopf) is test support, and only this measurement needs it.
    from tests.support import kubeconfig as kubeconfig_mod
    from tests.support.emulator_thread import EmulatorThread
    from tests.support.kube_client import SECRETS, SyncKube, secret_body

    names = [f"bench-{i:04d}" for i in range(objects)]
    busy = names[::jobs_every] if jobs_every else []
    results: dict[str, Any] = {
        "objects": objects,
        "queues_with_jobs": len(busy),
        "jobs_per_busy_queue": jobs,
        "polling_interval_s": polling_interval,
    }
    with (
        tempfile.TemporaryDirectory(prefix="jobqueue-bench-") as tmp,
        RedisServer() as redis_server,
        EmulatorThread() as emu,
    ):
        emu.call(emu.emulator.register_crd, CRD_PATH)
        kube = SyncKube(emu.url)
        kube.create(SECRETS, secret_body("redis", {"url": redis_server.url}), namespace=NAMESPACE)
        enqueue(redis_server.url, busy, jobs)
        kubeconfig = kubeconfig_mod.write(Path(tmp) / "kubeconfig", emu.url)
        metrics_port = free_port()
        log = Path(tmp) / "operator.log"
        tally = RequestTally(emu)
        tally.start()
        shutdown: dict[str, Any] = {}
        try:
            with operator_process(kubeconfig, metrics_port, log, shutdown) as process:
                run = Run(emu, tally, process, metrics_port, log, redis_server, polling_interval)
                results |= run.startup()
                results |= run.handle(names, handle_timeout)
                time.sleep(settle)
                results |= run.steady(sample)
        finally:
            tally.stop()
            results |= shutdown
            if log.exists():
                results["log"] = log_summary(log)
                if keep_log is not None:
                    keep_log.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(log, keep_log)
    return results


class Run:
    """The phases of one measurement, against a started emulator, redis-server and operator."""

    def __init__(
        self,
        emu: Any,
        tally: RequestTally,
        process: subprocess.Popen[bytes],
        metrics_port: int,
        log: Path,
        redis_server: RedisServer,
        polling_interval: int,
    ) -> None:
        from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES

        self.polling_interval = polling_interval
        self.emu = emu
        self.emulator = emu.emulator
        self.tally = tally
        self.process = process
        self.metrics_port = metrics_port
        self.log = log
        self.jobqueues, self.deployments = JOBQUEUES, DEPLOYMENTS
        redis_process = redis_server.process
        self.sampler = Sampler(
            psutil.Process(process.pid), psutil.Process(redis_process.pid) if redis_process else None
        )

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.process.returncode} (see its log)")

    def startup(self) -> dict[str, Any]:
        """Until the operator watches JobQueues; then its idle RSS."""

        def watching() -> bool:
            self.alive()
            return self.emu.call(self.emulator.watchers, self.jobqueues) > 0

        started = time.monotonic()
        wait_until(watching, timeout=30, interval=0.1, what="the operator watching JobQueues")
        out: dict[str, Any] = {"startup_s": round(time.monotonic() - started, 2)}
        time.sleep(1)
        out["rss_idle_mb"] = round(self.sampler.run(2.0)["rss_peak_mb"], 1)
        return out

    def _create(self, batch: list[str]) -> None:
        from tests.support.kube_client import jobqueue_body

        for name in batch:
            body = jobqueue_body(name, jobqueue_spec(name, self.polling_interval))
            self.emulator.create_object(self.jobqueues, body, namespace=NAMESPACE)

    def _unhandled(self, batch: list[str]) -> list[str]:
        """Those without status.observedGeneration == generation or without their Deployment."""
        left = []
        for name in batch:
            # The stored bodies, read in place: get_object's deep copies would load the emulator.
            body = self.emulator._live((self.jobqueues, NAMESPACE, name)) or {}
            seen = (body.get("status") or {}).get("observedGeneration")
            generation = (body.get("metadata") or {}).get("generation")
            deployment = self.emulator._live((self.deployments, NAMESPACE, f"{name}-worker"))
            if seen is None or seen != generation or deployment is None:
                left.append(name)
        return left

    def handle(self, names: list[str], timeout: float) -> dict[str, Any]:
        """Create the JobQueues (batches of 50, so the operator is served in between); until all handled."""
        created_at = time.monotonic()
        for index in range(0, len(names), 50):
            self.emu.call(self._create, names[index : index + 50])
        out: dict[str, Any] = {"create_s": round(time.monotonic() - created_at, 2)}
        pending = list(names)
        handled_at: list[float] = []
        while pending and time.monotonic() < created_at + timeout:
            self.alive()
            left = self.emu.call(self._unhandled, pending)
            handled_at += [time.monotonic() - created_at] * (len(pending) - len(left))
            pending = left
            if pending:
                time.sleep(0.5)
        out["handled"] = len(names) - len(pending)
        if handled_at:
            out["handle_all_s" if not pending else "handle_some_s"] = round(handled_at[-1], 2)
            out["handle_p50_s"] = round(handled_at[len(handled_at) // 2], 2)
        if pending:
            out["unhandled_examples"] = pending[:5]
        return out

    def steady(self, seconds: float) -> dict[str, Any]:
        """RSS, CPU, API requests, passes and log lines over ``seconds`` of steady state."""
        self.alive()
        metrics_before = scrape(self.metrics_port)
        requests_before = self.tally.snapshot()
        log_offset = self.log.stat().st_size
        window = self.sampler.run(seconds)
        kinds = self.tally.snapshot() - requests_before
        log_segment = read_from(self.log, log_offset)
        metrics_after = scrape(self.metrics_port)
        self.alive()
        elapsed = window["elapsed_s"]

        def delta(name: str) -> float:
            return metrics_after.get(name, 0.0) - metrics_before.get(name, 0.0)

        passes = delta("jobqueue_decision_duration_seconds_count")
        pass_seconds = delta("jobqueue_decision_duration_seconds_sum")
        cpu = window["operator_cpu_percent"]
        operator = self.sampler.processes["operator"]
        assert operator is not None
        return {
            "rss_peak_mb": round(window["rss_peak_mb"], 1),
            "rss_mean_mb": round(window["rss_mean_mb"], 1),
            "cpu_percent": round(cpu, 1),
            "bench_process_cpu_percent": round(window["bench_cpu_percent"], 1),
            "redis_cpu_percent": round(window.get("redis_cpu_percent", 0.0), 1),
            "sample_s": round(elapsed, 1),
            "api_requests_per_s": round(sum(kinds.values()) / elapsed, 1),
            "api_requests_by_kind_per_s": {k: round(v / elapsed, 1) for k, v in kinds.most_common()},
            "passes_per_s": round(passes / elapsed, 1),
            "pass_mean_ms": round(1000 * pass_seconds / passes, 1) if passes else None,
            "cpu_ms_per_pass": round(10 * cpu * elapsed / passes, 2) if passes else None,
            "log_lines_per_s": round(log_segment.count(b"\n") / elapsed, 1),
            "probe_errors_total": metrics_after.get("jobqueue_probe_errors_total", 0),
            "threads": operator.num_threads(),
            "open_fds": operator.num_fds(),
        }
