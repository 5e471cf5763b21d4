"""One active operator: two real operator processes (the production entry point) on one emulator.

Each process logs in with its own token, so the emulator counts every request by operator.

Case matrix:

| step                                  | what must hold                                               |
| ------------------------------------- | ------------------------------------------------------------ |
| A starts, then B                      | A holds the Lease; B watches JobQueues and reads the Lease   |
| q1 paused by annotation, q2 not, both | q1 stays at 0 replicas with Paused=True, q2 scales to 3; B   |
| with jobs                             | sent no write and read nothing else, never connected to Redis |
| q2's maxReplicas lowered              | acted on once: one ScaledDown Event, by A                    |
| A frozen (SIGSTOP: it cannot renew)   | B takes the Lease; its first write is the Lease; it reports  |
|                                       | q2, now paused by annotation, as paused and leaves it alone  |
| A thawed (SIGCONT), its deadline past | A looks at the Lease again and writes nothing at all         |
| SIGKILL B                             | A takes over within lease duration + retry period (plus      |
|                                       | slack for this machine), writes nothing before the Lease,    |
|                                       | and acts on a change                                         |
| SIGTERM A                             | it exits 0 and releases the Lease (empty holder)            |
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis as sync_redis

from tests.support import kubeconfig as kubeconfig_mod
from tests.support import operator_cli
from tests.support.emulator_requests import writes
from tests.support.emulator_thread import EmulatorThread
from tests.support.kube_client import DEPLOYMENTS, EVENTS, JOBQUEUES, SECRETS, SyncKube, secret_body
from tests.support.kube_fixtures import PRODUCT_CRD_PATH, REPO_ROOT
from tests.support.wait import wait_for_sync
from worker_runtime import JobSpec
from worker_runtime.queue import SyncQueue

LEASES = "coordination.k8s.io/v1/leases"
LEASE = "jobqueue-operator-test"
# Short timings, so the test takes seconds; the bound after a crash is LEASE_S + RETRY_S.
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5
# What this machine (2 shared cores, three Python processes) may add to the bound.
SLACK_S = 6.0
PAUSED = "jobqueue.dev/paused"
# What only the leader may touch.
LEADER_ONLY = ("deployments", "secrets", "pods", "events", "horizontalpodautoscalers", "jobqueues/status")


def start(kubeconfig: pathlib.Path, identity: str, log: pathlib.Path) -> subprocess.Popen[bytes]:
    cmd = operator_cli.command(
        "--metrics-port",
        "0",
        "--leader-elect",
        f"--leader-elect-lease-name={LEASE}",
        "--leader-elect-namespace=default",
        f"--leader-elect-id={identity}",
        f"--leader-elect-lease-duration={LEASE_S}",
        f"--leader-elect-renew-deadline={RENEW_S}",
        f"--leader-elect-retry-period={RETRY_S}",
    )
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)


def spec(queue: str, max_replicas: int = 5) -> dict[str, Any]:
    return {
        "queue": {"name": queue, "redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
        "workers": {
            "concurrency": 1,
            "template": {"spec": {"containers": [{"name": "worker", "image": "example/worker:1"}]}},
        },
        "scaling": {
            "maxReplicas": max_replicas,
            "pollingInterval": 1,
            "targets": {"backlogPerReplica": 2},
            "scaleDown": {"stabilizationWindowSeconds": 0, "tolerance": 0},
        },
    }


class Cluster:
    """The emulator, read from the test's thread."""

    def __init__(self, emu: EmulatorThread) -> None:
        self.emu = emu
        self.kube = SyncKube(emu.url)

    def holder(self) -> str:
        lease = self.emu.call(self.emu.emulator.get_object, LEASES, "default", LEASE) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def replicas(self, name: str) -> int | None:
        body = self.kube.get(DEPLOYMENTS, f"{name}-worker")
        return None if body is None else int(body["spec"]["replicas"])

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        body = self.kube.get(JOBQUEUES, name) or {}
        return next((c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == kind), {})

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.kube.get(JOBQUEUES, name) or {}).get("status") or {})

    def counts(self, token: str) -> dict[str, int]:
        return dict(self.emu.call(self.emu.emulator.clients.of, token))

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.list(EVENTS) if e.get("reason") == reason]

    def requests_of(self, token: str, after: Any = None) -> list[tuple[str, str, Any]]:
        """(method, path, body) of each request of ``token`` still in the emulator's log, in order;
        with ``after`` (a ``mark()``), only those that came after it."""

        def collect() -> list[tuple[str, str, Any]]:
            log = list(self.emu.emulator._requests)
            if after is not None:
                starts = [index for index, request in enumerate(log) if request is after]
                assert starts, "the mark left the emulator's bounded request log"
                log = log[starts[0] + 1 :]
            return [
                (str(r.method).rsplit(".", 1)[-1].upper(), r.url.path, r.data)
                for r in log
                if r.headers.get("Authorization") == f"Bearer {token}"
            ]

        return self.emu.call(collect)

    def mark(self) -> Any:
        """The newest request in the emulator's log, to read what came after it."""
        return self.emu.call(lambda: self.emu.emulator._requests[-1])


def redis_connections(process: subprocess.Popen[bytes], port: int) -> list[Any]:
    return [c for c in psutil.Process(process.pid).net_connections() if c.raddr and c.raddr.port == port]


@pytest.fixture
def operators(tmp_path: pathlib.Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_one_leader_acts_and_a_standby_takes_over(
    tmp_path: pathlib.Path, redis_url: str, queue_name: str, operators: list[subprocess.Popen[bytes]]
) -> None:
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with EmulatorThread() as emu:
        cluster = Cluster(emu)
        emu.call(emu.emulator.register_crd, PRODUCT_CRD_PATH)
        cluster.kube.create(SECRETS, secret_body("redis", {"url": redis_url}))
        configs = {
            token: kubeconfig_mod.write(tmp_path / f"{token}.kubeconfig", emu.url, token=token)
            for token in ("op-a", "op-b")
        }
        a = start(configs["op-a"], "op-a", tmp_path / "a.log")
        operators.append(a)
        wait_for_sync(lambda: cluster.holder() == "op-a", timeout=30, message="A holds the Lease")
        b = start(configs["op-b"], "op-b", tmp_path / "b.log")
        operators.append(b)
        wait_for_sync(
            lambda: (
                cluster.counts("op-b").get("WATCH jobqueues", 0) > 0
                and cluster.counts("op-b").get("GET leases")
            ),
            timeout=30,
            message="B watches JobQueues and looks at the Lease",
        )

        client = sync_redis.Redis.from_url(redis_url)
        for name in ("q1", "q2"):
            SyncQueue(f"{queue_name}-{name}", client).enqueue_many([JobSpec("w", {"n": n}) for n in range(6)])
        paused = {"name": "q1", "annotations": {PAUSED: "true"}}
        cluster.kube.create(JOBQUEUES, {"metadata": paused, "spec": spec(f"{queue_name}-q1")})
        cluster.kube.create(JOBQUEUES, {"metadata": {"name": "q2"}, "spec": spec(f"{queue_name}-q2")})

        # --- A leads, B stands by
        wait_for_sync(lambda: cluster.replicas("q2") == 3, timeout=15, message="A scales q2 to 3")
        wait_for_sync(
            lambda: (
                cluster.status("q1").get("waiting") == 6
                and cluster.condition("q1", "Paused").get("status") == "True"
            ),
            timeout=15,
            message="A probes q1 and reports it paused",
        )
        assert cluster.replicas("q1") == 0
        cluster.kube.patch(JOBQUEUES, "q2", {"spec": {"scaling": {"maxReplicas": 2}}})
        wait_for_sync(lambda: cluster.replicas("q2") == 2, timeout=15, message="the change is acted on")
        wait_for_sync(lambda: cluster.events("ScaledDown"), message="the ScaledDown Event")
        assert len(cluster.events("ScaledDown")) == 1, cluster.events("ScaledDown")
        standby = cluster.counts("op-b")
        assert writes(standby) == {}, f"the standby wrote: {standby}"
        touched = [kind for kind in standby if kind.split(" ", 1)[1].startswith(LEADER_ONLY)]
        assert touched == [], f"the standby read what only the leader needs: {touched}"
        assert redis_connections(b, redis_port) == [], "the standby connected to Redis"
        assert redis_connections(a, redis_port), "the leader probes Redis (the check above can fail)"

        # --- A frozen: it cannot renew, so B takes over; q2 is paused meanwhile
        a.send_signal(signal.SIGSTOP)
        wait_for_sync(
            lambda: cluster.holder() == "op-b", timeout=LEASE_S + RETRY_S + SLACK_S, message="B takes over"
        )
        first_write = next(r for r in cluster.requests_of("op-b") if r[0] != "GET")
        assert first_write[:2] == ("PATCH", f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{LEASE}")
        cluster.kube.patch(JOBQUEUES, "q2", {"metadata": {"annotations": {PAUSED: "true"}}})
        SyncQueue(f"{queue_name}-q2", client).enqueue_many([JobSpec("w", {"n": n}) for n in range(6)])
        wait_for_sync(
            lambda: (
                cluster.status("q2").get("waiting") == 12
                and cluster.condition("q2", "Paused").get("status") == "True"
            ),
            timeout=15,
            message="B probes q2 and reports it paused",
        )
        client.close()

        # --- A thawed: its renew deadline is long past, it must not act on what it remembers
        before = cluster.counts("op-a")
        a.send_signal(signal.SIGCONT)
        wait_for_sync(
            lambda: cluster.counts("op-a").get("GET leases", 0) >= before.get("GET leases", 0) + 3,
            timeout=15,
            message="A is running again and looking at the Lease",
        )
        thawed = cluster.counts("op-a")
        assert writes(thawed) == writes(before), f"the thawed former leader wrote: {thawed}"
        wait_for_sync(
            lambda: redis_connections(a, redis_port) == [], message="a standby holds no Redis connection"
        )
        assert cluster.replicas("q2") == 2 and cluster.replicas("q1") == 0

        # --- B crashes: A takes over within the bound and acts
        b.send_signal(signal.SIGKILL)
        b.wait(10)
        killed, mark = time.monotonic(), cluster.mark()
        wait_for_sync(
            lambda: cluster.holder() == "op-a",
            timeout=LEASE_S + RETRY_S + SLACK_S,
            interval=0.05,
            message="A takes the Lease over",
        )
        takeover = time.monotonic() - killed
        first_write = next(r for r in cluster.requests_of("op-a", after=mark) if r[0] != "GET")
        assert first_write[:2] == ("PATCH", f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{LEASE}")
        cluster.kube.patch(JOBQUEUES, "q2", {"metadata": {"annotations": {PAUSED: None}}})
        wait_for_sync(lambda: cluster.replicas("q2") == 2, timeout=15, message="q2 stays at its maxReplicas")
        cluster.kube.patch(JOBQUEUES, "q2", {"spec": {"scaling": {"maxReplicas": 4}}})
        wait_for_sync(lambda: cluster.replicas("q2") == 4, timeout=15, message="A acts on a change")
        assert cluster.replicas("q1") == 0 and cluster.condition("q1", "Paused").get("status") == "True"
        print(f"takeover {takeover:.2f} s after SIGKILL (bound {LEASE_S + RETRY_S:g} s)")

        # --- A exits: the Lease is released
        a.send_signal(signal.SIGTERM)
        assert a.wait(20) == 0, (tmp_path / "a.log").read_text()
        released = [
            body
            for method, path, body in cluster.requests_of("op-a")
            if method == "PATCH" and path.endswith(f"/leases/{LEASE}")
        ][-1]
        assert released["spec"]["holderIdentity"] == "", json.dumps(released)
        assert cluster.holder() == ""
