"""Real kubectl against the emulator (served from its own thread): the flows operators' users run.

Case matrix: apply a CRD and an object (``--validate=false``) -> ``kubectl get jq`` prints the CRD's
printer columns -> ``kubectl wait --for=jsonpath`` returns once the test patches the status ->
``kubectl delete --wait`` returns once the test releases the finalizer. Skipped, with the reason,
only when no kubectl binary is found.
"""

from __future__ import annotations

import json

from tests.support.emulator_thread import EmulatorThread
from tests.support.kube_client import JOBQUEUES, SyncKube
from tests.support.kube_fixtures import TEST_CRD_PATH, Kubectl
from tests.support.wait import wait_for_sync

QUEUE = """
apiVersion: jobqueue.dev/v1alpha1
kind: JobQueue
metadata:
  name: emails
  finalizers: [jobqueue.dev/finalizer]
spec:
  queue: outbound-email
  maxReplicas: 5
"""


def test_kubectl_apply_get_wait_delete(
    emulator_thread: EmulatorThread, kube_sync: SyncKube, kubectl: Kubectl
) -> None:
    applied = kubectl("apply", "--validate=false", "-f", str(TEST_CRD_PATH))
    assert "customresourcedefinition.apiextensions.k8s.io/jobqueues.jobqueue.dev created" in applied.stdout
    kubectl("wait", "--for=condition=Established", "crd/jobqueues.jobqueue.dev", "--timeout=10s")
    assert (
        "jobqueue.jobqueue.dev/emails created"
        in kubectl("apply", "--validate=false", "-f", "-", input=QUEUE).stdout
    )
    again = kubectl(
        "apply", "--validate=false", "-f", "-", input=QUEUE.replace("maxReplicas: 5", "maxReplicas: 6")
    )
    assert "jobqueue.jobqueue.dev/emails configured" in again.stdout

    table = kubectl("get", "jq").stdout.splitlines()
    assert table[0].split() == ["NAME", "QUEUE", "MAX", "REPLICAS", "PHASE", "AGE"], table
    assert table[1].split()[:3] == ["emails", "outbound-email", "6"], table
    body = json.loads(kubectl("get", "jobqueue", "emails", "-o", "json").stdout)
    assert body["metadata"]["generation"] == 2 and body["metadata"]["uid"]

    waiter = kubectl.popen("wait", "--for=jsonpath={.status.phase}=Ready", "jq/emails", "--timeout=20s")
    try:
        wait_for_sync(
            lambda: emulator_thread.call(emulator_thread.emulator.watchers, JOBQUEUES) > 0, message="waiting"
        )
        assert waiter.poll() is None, waiter.communicate()
        kube_sync.patch(
            JOBQUEUES, "emails", {"status": {"phase": "Ready", "replicas": 2}}, subresource="status"
        )
        out, err = waiter.communicate(timeout=20)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, (out, err)
    assert "jobqueue.jobqueue.dev/emails condition met" in out
    assert kubectl("get", "jq", "emails").stdout.splitlines()[1].split()[3:5] == ["2", "Ready"]

    deleter = kubectl.popen("delete", "jq", "emails", "--wait=true", "--timeout=20s")
    try:
        wait_for_sync(
            lambda: (kube_sync.get(JOBQUEUES, "emails") or {}).get("metadata", {}).get("deletionTimestamp"),
            message="marked for deletion",
        )
        wait_for_sync(
            lambda: emulator_thread.call(emulator_thread.emulator.watchers, JOBQUEUES) > 0, message="waiting"
        )
        assert deleter.poll() is None, deleter.communicate()
        kube_sync.patch(JOBQUEUES, "emails", {"metadata": {"finalizers": None}})
        out, err = deleter.communicate(timeout=20)
    finally:
        deleter.kill()
    assert deleter.returncode == 0, (out, err)
    assert kube_sync.get(JOBQUEUES, "emails") is None
    assert "No resources found" in kubectl("get", "jq").stderr


def test_kubectl_is_the_pinned_one(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "--client", "-o", "json").stdout)
    assert version["clientVersion"]["gitVersion"].startswith("v1."), version
