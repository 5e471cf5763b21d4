"""One monitored run, shared by the tier's tests: a real Prometheus scraping a real operator and
real workers, with the labels the chart's ServiceMonitor and PodMonitor give their targets.

What runs (all on loopback):

* the emulated API server (its own thread) with the product CRD, a Secret naming the test's Redis
  and one JobQueue (``emails``: min 0, max 3, backlog 5 per replica, a 60 s age target, 1 s windows),
  and a second (``unreachable``) whose Secret names a port nothing listens on;
* the operator's production entry point (``jobqueue operator run``) as a child process, serving
  ``/metrics`` on a free port;
* ``WorkerPods``, in the part of the Deployment controller and the kubelet: it keeps as many
  ``jobqueue worker`` processes (at most two, for this machine) as the Deployment asks for, writes
  the Deployment's status from them (a pod is ready once its ``/healthz`` answers 200), and lists
  them for Prometheus' file discovery with the labels a PodMonitor gives;
* ``prometheus`` (Debian's, from PATH), scraping every second, evaluating the chart's real
  ``files/alerts.yaml`` every second.

The run: 40 jobs that complete, 12 that fail once and then complete, 4 that can never succeed (in
a second batch, once every worker pod has been scraped), each run taking 0.4 s on two workers of
concurrency 2, so the run lasts several scrapes. The
operator scales 0 -> 3 (the first scale event of its series), the workers drain the queue, the
operator scales back to 0. The tests then read what a dashboard and the alerts would read.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as sync_redis
import yaml

from tests.support import kubeconfig, operator_cli, processes
from tests.support import prometheus as prom
from tests.support.emulator_thread import EmulatorThread
from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES, SECRETS, SyncKube, secret_body
from tests.support.kube_fixtures import PRODUCT_CRD_PATH, REPO_ROOT
from tests.support.wait import wait_for_sync
from worker_runtime.embedded_redis import RedisServer, free_port
from worker_runtime.queue import SyncQueue

ALERTS = REPO_ROOT / "charts" / "jobqueue-operator" / "files" / "alerts.yaml"
APP = "tests.integration.monitoring.monitoring_app:app"
SCRAPE_SECONDS = 1.0
NAMESPACE = "default"  # of the JobQueue and its worker pods
OPERATOR_NAMESPACE = "jobqueue-system"
OPERATOR_POD = "jobqueue-operator-7d9f8b6c5-x2x4q"
JOBQUEUE = "emails"
UNREACHABLE = "unreachable"  # a JobQueue whose Redis never answers: its probe never succeeds
WORKER_CAP = 2  # worker processes at most, whatever the Deployment asks for: 2 cores
# Enqueued in two batches: the failures come once Prometheus has scraped every worker pod, since
# what a pod counts before its first scrape is invisible to rate() (in a cluster too), and not
# last, so that every pod is scraped again after them before it exits.
FIRST = [("ok", 24)]
THEN = [("poison", 4), ("flaky", 12), ("ok", 16)]
ENQUEUED = FIRST + THEN
COUNTS = {name: sum(n for job, n in ENQUEUED if job == name) for name, _ in ENQUEUED}
# Seconds each ok and flaky run takes: the run lasts several scrapes (rate() needs two samples).
JOB_SECONDS = 0.4
WORKER_CONCURRENCY = 2


def prometheus_config(workers_file: pathlib.Path, operator_port: int) -> dict[str, Any]:
    """Scrape configs that give the labels prometheus-operator gives: for the ServiceMonitor (job =
    the Service's name, namespace/pod/service/container/endpoint of the target, honorLabels so the
    operator's own ``namespace`` label wins) and for the PodMonitor (job = "<ns>/<podmonitor>",
    the pod's namespace, pod, container and endpoint)."""
    interval = f"{SCRAPE_SECONDS:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {
                "job_name": f"serviceMonitor/{OPERATOR_NAMESPACE}/jobqueue-operator/0",
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator_port}"],
                        "labels": {
                            "namespace": OPERATOR_NAMESPACE,
                            "pod": OPERATOR_POD,
                            "service": "jobqueue-operator-metrics",
                            "container": "operator",
                            "endpoint": "metrics",
                        },
                    }
                ],
                "relabel_configs": [{"target_label": "job", "replacement": "jobqueue-operator-metrics"}],
            },
            {
                "job_name": f"podMonitor/{NAMESPACE}/{JOBQUEUE}-workers/0",
                "file_sd_configs": [{"files": [str(workers_file)], "refresh_interval": "1s"}],
                "relabel_configs": [
                    {"target_label": "job", "replacement": f"{NAMESPACE}/{JOBQUEUE}-workers"}
                ],
            },
        ],
    }


@dataclass
class WorkerPod:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def ready(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False


@dataclass
class WorkerPods:
    """The Deployment controller and kubelet of the tier (see the module docstring)."""

    kube: SyncKube
    deployment: str
    redis_url: str
    queue: str
    sd_file: pathlib.Path
    log_dir: pathlib.Path
    pods: list[WorkerPod] = field(default_factory=list)
    started: int = 0
    most: int = 0  # most pods at once
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _reported: tuple[int, int] | None = None
    errors: list[BaseException] = field(default_factory=list)
    prometheus: prom.PrometheusServer | None = None

    def start(self) -> WorkerPods:
        self.write_targets()
        self._thread = threading.Thread(target=self._run, name="worker-pods", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception as exc:  # kept for the test to see; the loop goes on like a controller
                self.errors.append(exc)
            self._stop.wait(0.2)

    def reconcile(self) -> None:
        body = self.kube.get(DEPLOYMENTS, self.deployment, NAMESPACE)
        if body is None:
            return
        wanted = min(int(body["spec"].get("replicas") or 0), WORKER_CAP)
        changed = False
        while len(self.pods) < wanted:
            self.pods.append(self._spawn())
            changed = True
        while len(self.pods) > wanted:
            pod = self.pods.pop()
            try:
                self.wait_last_scrape(pod)
            finally:  # stopped even when its counts never showed (the test then reports why)
                processes.stop_process(pod.process, timeout=20)
            changed = True
        self.most = max(self.most, len(self.pods))
        if changed:
            self.write_targets()
        ready = sum(pod.ready() for pod in self.pods)
        if self._reported != (len(self.pods), ready):
            status = {
                "replicas": len(self.pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": len(self.pods),
                "observedGeneration": body["metadata"].get("generation", 1),
            }
            self.kube.patch(DEPLOYMENTS, self.deployment, {"status": status}, NAMESPACE, subresource="status")
            self._reported = (len(self.pods), ready)

    def _spawn(self) -> WorkerPod:
        self.started += 1
        name = f"{self.deployment}-5c9d7f4b8-{self.started:05d}"
        port = free_port()
        env = os.environ | {
            "TEST_QUEUE": self.queue,
            "JOBQUEUE_REDIS_URL": self.redis_url,
            "JOBQUEUE_METRICS_PORT": str(port),
            "JOBQUEUE_POD_NAME": name,
            "JOBQUEUE_CONCURRENCY": str(WORKER_CONCURRENCY),
            "PYTHONPATH": str(REPO_ROOT),
        }
        log = (self.log_dir / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "worker_runtime", "worker", APP]
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return WorkerPod(name, port, process)

    def wait_last_scrape(self, pod: WorkerPod) -> None:
        """Until Prometheus holds at least the job counts the pod serves now. What a pod counts
        after its last scrape is lost when it exits (in a cluster too), and the run's last jobs (the
        flaky ones' retries) end just before the scale-down: without this the tests would count them
        only when a scrape happened to fall in between. At least: a job the pod is finishing counts
        after this read. A pod that counted nothing, or serves no metrics, has nothing to lose."""
        prometheus = self.prometheus
        if prometheus is None or pod.process.poll() is not None:
            return
        served = _served_job_counts(pod)
        if served == 0:
            return
        query = f'sum(jobqueue_jobs_total{{pod="{pod.name}"}})'
        wait_for_sync(
            lambda: any(float(s["value"][1]) >= served for s in prometheus.query(query)),
            timeout=15,
            interval=0.2,
            message=f"{pod.name}'s last counts ({served:g} jobs) scraped",
        )

    def write_targets(self) -> None:
        groups = [
            {
                "targets": [f"127.0.0.1:{pod.port}"],
                "labels": {
                    "namespace": NAMESPACE,
                    "pod": pod.name,
                    "container": "worker",
                    "endpoint": "metrics",
                },
            }
            for pod in self.pods
        ]
        tmp = self.sd_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(groups))
        tmp.replace(self.sd_file)  # file discovery must never read half a file

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for pod in self.pods:
            processes.stop_process(pod.process, timeout=20)
        self.pods.clear()


@dataclass
class MonitoredRun:
    prometheus: prom.PrometheusServer
    queue: str
    started: float
    ended: float
    operator: subprocess.Popen[str]
    pods: WorkerPods

    def stop_operator(self) -> int:
        self.operator.send_signal(signal.SIGTERM)
        try:
            self.operator.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.operator.kill()
            self.operator.communicate()
        return self.operator.returncode


def jobqueue_body(queue: str, name: str = JOBQUEUE, secret: str = "redis") -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "queue": {"name": queue, "redis": {"urlSecretRef": {"name": secret, "key": "url"}}},
            "workers": {
                "concurrency": WORKER_CONCURRENCY,
                "template": {"spec": {"containers": [{"name": "worker", "image": "example/worker:1"}]}},
            },
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 3,
                "pollingInterval": 1,
                "targets": {"backlogPerReplica": 5, "maxOldestAge": 60},
                "scaleDown": {"stabilizationWindowSeconds": 1, "tolerance": 0},
                "cooldownSeconds": 1,
            },
            "jobs": {"timeoutSeconds": 20},
        },
    }


def _require_prometheus() -> None:
    if prom.binary() is None:
        reason = "prometheus is not on PATH; install it with `apt-get install -y prometheus` (.ci/run does)"
        print(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def monitored_run(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MonitoredRun]:
    _require_prometheus()
    root = tmp_path_factory.mktemp("monitoring")
    queue = f"t-{uuid.uuid4().hex[:12]}"
    operator_port = free_port()
    sd_file = root / "worker-pods.yaml"
    rules = {"alerts.yaml": ALERTS.read_text()}
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(EmulatorThread())
        kube = SyncKube(emulator.url)
        emulator.call(emulator.emulator.register_crd, PRODUCT_CRD_PATH)
        kube.create(SECRETS, secret_body("redis", {"url": redis_server.url}), NAMESPACE)
        nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        kube.create(SECRETS, secret_body("redis-nowhere", {"url": nowhere}), NAMESPACE)
        config_path = kubeconfig.write(root / "kubeconfig", emulator.url)
        pods = WorkerPods(kube, f"{JOBQUEUE}-worker", redis_server.url, queue, sd_file, root)
        pods.write_targets()
        prometheus = stack.enter_context(
            prom.PrometheusServer(prometheus_config(sd_file, operator_port), rules)
        )
        pods.prometheus = prometheus
        started = time.time()
        command = operator_cli.command(
            "--standalone", "--metrics-port", str(operator_port), namespace=NAMESPACE
        )
        operator_log = (root / "operator.log").open("w")
        operator = subprocess.Popen(
            command,
            env=dict(os.environ, KUBECONFIG=str(config_path)),
            cwd=REPO_ROOT,
            stdout=operator_log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        run = MonitoredRun(prometheus, queue, started, started, operator, pods)
        stack.callback(lambda: operator.poll() is None and run.stop_operator())
        stack.callback(operator_log.close)
        stack.callback(pods.stop)
        prometheus.wait_scraped(1)  # the operator answers before the JobQueue exists
        kube.create(JOBQUEUES, jobqueue_body(queue), NAMESPACE)
        kube.create(
            JOBQUEUES, jobqueue_body(f"{queue}-{UNREACHABLE}", UNREACHABLE, "redis-nowhere"), NAMESPACE
        )
        wait_for_sync(
            lambda: kube.get(DEPLOYMENTS, f"{JOBQUEUE}-worker", NAMESPACE), timeout=20, message="Deployment"
        )
        pods.start()
        _enqueue(redis_server.url, queue, FIRST)
        wait_for_sync(
            lambda: _every_pod_scraped(run), timeout=30, interval=0.1, message="worker pods scraped"
        )
        _enqueue(redis_server.url, queue, THEN)
        _wait_for_the_run(run, redis_server.url)
        run.ended = time.time()
        yield run


def _served_job_counts(pod: WorkerPod) -> float:
    """The sum of ``jobqueue_jobs_total`` over the series the pod's ``/metrics`` serves now."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{pod.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:  # not serving yet: nothing of it can have been scraped either
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("jobqueue_jobs_total{")
    )


def _every_pod_scraped(run: MonitoredRun) -> bool:
    """Whether Prometheus holds a sample of the queue's counters from every running worker pod."""
    running = {pod.name for pod in run.pods.pods}
    found = run.prometheus.query(f'count by (pod) (jobqueue_jobs_total{{queue="{run.queue}"}})')
    return bool(running) and running <= {s["metric"]["pod"] for s in found}


def _enqueue(redis_url: str, queue: str, batches: list[tuple[str, int]]) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    producer = SyncQueue(queue, client)
    try:
        for name, count in batches:
            for _ in range(count):
                producer.enqueue(name, JOB_SECONDS if name != "poison" else None)
    finally:
        client.close()


def _wait_for_the_run(run: MonitoredRun, redis_url: str) -> None:
    """Until the queue is drained, the workers are gone (scaled back to 0) and Prometheus has
    scraped the operator since: every event of the run is in its TSDB."""
    client = sync_redis.Redis.from_url(redis_url)
    producer = SyncQueue(run.queue, client)

    def drained() -> bool:
        stats = producer.stats()
        return stats.completed_total == COUNTS["ok"] + COUNTS["flaky"] and stats.dead == COUNTS["poison"]

    try:
        wait_for_sync(drained, timeout=45, interval=0.2, message="every job completed or dead")
    finally:
        client.close()
    p = run.prometheus
    up = 'sum(increase(jobqueue_scale_events_total{direction="up"}[5m]))'
    down = 'sum(increase(jobqueue_scale_events_total{direction="down"}[5m]))'
    wait_for_sync(lambda: p.query(f"{up} > 0"), timeout=20, interval=0.5, message="a scale-up event scraped")
    wait_for_sync(
        lambda: p.query(f"{down} > 0"), timeout=30, interval=0.5, message="a scale-down event scraped"
    )
    wait_for_sync(lambda: not run.pods.pods, timeout=30, interval=0.2, message="worker pods gone")
    assert not run.pods.errors, run.pods.errors
