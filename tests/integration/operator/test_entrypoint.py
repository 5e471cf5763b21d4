"""The production entry point and the real kubectl, against the emulator in its own thread.

Case matrix: ``python -m worker_runtime operator run --namespace default --standalone`` as a
subprocess with a kubeconfig scales a Deployment from queue depth and exits 0 on SIGTERM; kubectl
applies the generated CRD and examples/jobqueue.yaml (Secret pointed at the test redis), waits for
``status.desiredReplicas``, prints the printer columns, and deletes.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

import redis as sync_redis

from tests.support import operator_cli
from tests.support.emulator_thread import EmulatorThread
from tests.support.kube_client import DEPLOYMENTS, JOBQUEUES, SyncKube
from tests.support.kube_fixtures import PRODUCT_CRD_PATH, REPO_ROOT, Kubectl
from tests.support.wait import wait_for_sync
from worker_runtime.queue import SyncQueue

EXAMPLE = REPO_ROOT / "examples" / "jobqueue.yaml"


def start_operator(kubeconfig: pathlib.Path) -> subprocess.Popen[str]:
    cmd = operator_cli.command("--standalone", "--metrics-port", "0")
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    return subprocess.Popen(
        cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def example(redis_url: str, queue: str) -> str:
    text = EXAMPLE.read_text()
    text = text.replace("redis://redis.default.svc.cluster.local:6379/0", redis_url)
    return text.replace("name: emails\n    redis", f"name: {queue}\n    redis").replace(
        "minReplicas: 0", "minReplicas: 0\n    pollingInterval: 1"
    )


def test_entry_point_and_kubectl(
    emulator_thread: EmulatorThread,
    kube_sync: SyncKube,
    kubectl: Kubectl,
    kubeconfig: pathlib.Path,
    redis_url: str,
    queue_name: str,
) -> None:
    kubectl("apply", "--validate=false", "-f", str(PRODUCT_CRD_PATH))
    kubectl("wait", "--for=condition=Established", "crd/jobqueues.jobqueue.dev", "--timeout=10s")
    operator = start_operator(kubeconfig)
    try:
        kubectl("apply", "--validate=false", "-f", "-", input=example(redis_url, queue_name))
        wait_for_sync(lambda: kube_sync.get(DEPLOYMENTS, "emails-worker"), timeout=15, message="Deployment")
        client = sync_redis.Redis.from_url(redis_url)
        queue = SyncQueue(queue_name, client)
        for index in range(60):
            queue.enqueue("send", {"n": index})
        desired = wait_for_sync(
            lambda: ((kube_sync.get(JOBQUEUES, "emails") or {}).get("status") or {}).get("desiredReplicas"),
            timeout=15,
            message="scaled up by the subprocess operator",
        )
        kubectl("wait", f"--for=jsonpath={{.status.desiredReplicas}}={desired}", "jq/emails", "--timeout=20s")
        wait_for_sync(
            lambda: (kube_sync.get(DEPLOYMENTS, "emails-worker") or {})["spec"]["replicas"] == desired,
            message="Deployment scaled",
        )
        table = kubectl("get", "jq").stdout.splitlines()
        assert "emails" in table[1] and "60" in table[1].split(), table
        assert {"READY", "REPLICAS", "DESIRED"} <= set(table[0].split()), table
        client.close()
        kubectl("delete", "jq", "emails", "--wait=true", "--timeout=20s")
        assert kube_sync.get(JOBQUEUES, "emails") is None
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            output, _ = operator.communicate(timeout=20)
        finally:
            operator.kill()
    assert operator.returncode == 0, output
