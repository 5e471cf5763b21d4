"""redis-py's clients for each topology of ``endpoint``, made the way the runtime needs them.

``connection.connect``/``connect_sync`` call ``async_client``/``sync_client`` with the options every
client gets (retries, timeouts, TLS). What this module adds to redis-py's own clients:

- Sentinel: the master's client owns its sentinels' clients too, so closing it closes them (redis-py
  leaves them open); it re-resolves the master on a lost connection and on READONLY (a demoted
  master), as redis-py's Sentinel pools do.
- Cluster: a lost connection inside a pipeline makes the client re-read the cluster's layout on its
  next call (redis-py does it only for single commands, or when it retries itself, which the
  runtime's clients do not: the callers back off and resend), so a failover is followed; a node
  that is not in cluster mode, or credentials every node refuses, are configuration errors, not
  outages.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as async_cluster
import redis.asyncio.sentinel as async_sentinel
import redis.cluster as sync_cluster
import redis.sentinel as sync_sentinel
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.connection import parse_url
from redis.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, ResponseError, SlotNotCoveredError

from worker_runtime.endpoint import Endpoint, Topology
from worker_runtime.errors import ConfigurationError

AsyncClient = aioredis.Redis | async_cluster.RedisCluster
SyncClient = redis.Redis | sync_cluster.RedisCluster

# Seconds a sentinel may take to answer which server is the master: a silent one is skipped.
SENTINEL_TIMEOUT_SECONDS = 2.0
# Connections an async Cluster client may open to one node (redis-py's async pools' own default).
ASYNC_CLUSTER_MAX_CONNECTIONS = 2**31


def async_client(target: Endpoint, options: dict[str, Any], sentinel_retry: Any) -> AsyncClient:
    if target.topology is Topology.STANDALONE:
        return aioredis.Redis.from_url(target.url, **options)
    shared = _node_options(target) | options
    if target.topology is Topology.SENTINEL:
        sentinels = async_sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.nodes, sentinel_kwargs=_sentinel_options(target, options, sentinel_retry), **shared
        )
        connection = _AsyncSentinelSSLConnection if target.tls else _AsyncSentinelConnection
        client: aioredis.Redis = sentinels.master_for(
            target.master, redis_class=_AsyncSentinelMaster, connection_class=connection
        )
        return client
    shared.setdefault("socket_timeout", None)  # as a standalone async client: callers bound their calls
    # Unbounded, as a standalone async client's pool: a worker holds a connection per blocking claim,
    # and redis-py's default of 100 per node fails a process serving many queues.
    shared.setdefault("max_connections", ASYNC_CLUSTER_MAX_CONNECTIONS)
    nodes = [async_cluster.ClusterNode(host, port) for host, port in target.nodes]
    return _AsyncCluster(startup_nodes=nodes, **_accepted(async_cluster.RedisCluster, shared, target))


def sync_client(target: Endpoint, options: dict[str, Any], sentinel_retry: Any) -> SyncClient:
    if target.topology is Topology.STANDALONE:
        return redis.Redis.from_url(target.url, **options)
    shared = _node_options(target) | options
    if target.topology is Topology.SENTINEL:
        sentinels = sync_sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.nodes, sentinel_kwargs=_sentinel_options(target, options, sentinel_retry), **shared
        )
        connection = _SyncSentinelSSLConnection if target.tls else _SyncSentinelConnection
        client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
            target.master, redis_class=_SyncSentinelMaster, connection_class=connection
        )
        return client
    nodes = [sync_cluster.ClusterNode(host, port) for host, port in target.nodes]  # type: ignore[no-untyped-call]
    # redis-py's sync cluster client reads the layout in its constructor: this raises when no node
    # answers (the async one waits for its first call).
    return _SyncCluster(startup_nodes=nodes, **shared)


def is_cluster(client: object) -> bool:
    return isinstance(client, async_cluster.RedisCluster | sync_cluster.RedisCluster)


def _node_options(target: Endpoint) -> dict[str, Any]:
    """What every data node shares (credentials, db, URL query options), from the endpoint's URL."""
    options: dict[str, Any] = dict(parse_url(target.url))
    for name in ("host", "port", "connection_class"):
        options.pop(name, None)
    if target.topology is Topology.CLUSTER:
        options.pop("db", None)  # always 0 (checked by endpoint.parse)
    if target.tls and target.topology is Topology.CLUSTER:
        options["ssl"] = True  # a Sentinel pool is given its TLS connection class instead
    return options


def _sentinel_options(target: Endpoint, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    """The sentinels' own connections: their credentials (``sentinel_*`` URL options), TLS as for the
    data nodes, a short reply deadline and one attempt each (redis-py asks the next sentinel)."""
    own: dict[str, Any] = {name.removeprefix("sentinel_"): value for name, value in target.sentinel_options}
    timeout = options.get("socket_connect_timeout") or SENTINEL_TIMEOUT_SECONDS
    own |= {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": retry}
    if target.tls:
        own["ssl"] = True
        own |= {k: v for k, v in options.items() if k.startswith("ssl_")}
    return own


def _accepted(cls: type, options: dict[str, Any], target: Endpoint) -> dict[str, Any]:
    """``options`` if ``cls`` takes them all; a URL option it does not know is a configuration error
    (the async cluster client has a fixed signature)."""
    known = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"Redis URL option(s) {', '.join(unknown)} are not supported with {target.topology.value} Redis"
        )
    return options


def _demoted(exc: ResponseError) -> bool:
    """A write refused because the server is a replica now, inside a script: Redis 7 says READONLY
    (redis-py's ReadOnlyError, which its Sentinel connections handle), 6.2 wraps it in an ERR."""
    return "-READONLY " in str(exc)


_NOW_A_REPLICA = "the Sentinel master became a replica (a failover): reconnecting to the new master"


class _AsyncSentinelConnection(async_sentinel.SentinelManagedConnection):
    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not _demoted(exc):
                raise
            await self.disconnect()  # the next connection asks the sentinels for the master
            raise RedisConnectionError(_NOW_A_REPLICA) from exc


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection, AsyncSSLConnection):
    pass


class _SyncSentinelConnection(sync_sentinel.SentinelManagedConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if not _demoted(exc):
                raise
            self.disconnect()  # type: ignore[no-untyped-call]
            raise RedisConnectionError(_NOW_A_REPLICA) from exc


class _SyncSentinelSSLConnection(_SyncSentinelConnection, SSLConnection):
    pass


class _AsyncSentinelMaster(aioredis.Redis):
    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            await manager.aclose()


class _SyncSentinelMaster(redis.Redis):
    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


def _layout_error(exc: RedisClusterException) -> Exception:
    """The runtime's reading of redis-py's catch-all cluster error when the layout cannot be read."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    if "Cluster mode is not enabled" in text:
        return ConfigurationError(
            "the Redis server is not in cluster mode: use a redis:// (or redis+sentinel://) URL"
        )
    if "cannot be connected" in text:
        if cause is not None and not isinstance(cause, RedisConnectionError | OSError):
            return cause if isinstance(cause, Exception) else exc  # credentials, TLS: say so
        return RedisConnectionError(text)
    if "not covered" in text:
        return SlotNotCoveredError(text)  # a failover in progress
    return exc


def _lost_connection(error: BaseException) -> bool:
    """A connection to a node lost (a failover?), not the client's own pool being full."""
    return isinstance(error, async_cluster.RedisCluster.ERRORS_ALLOW_RETRY) and not isinstance(
        error, MaxConnectionsError
    )


class _AsyncClusterPipeline(async_cluster.ClusterPipeline):
    """A lost connection fails the whole pipeline, as on one server (redis-py's cluster pipeline
    returns it in the place of each command whose reply it lost, so a batch that resends on a lost
    connection would take it for the commands' own errors), and makes the client re-read the layout
    on its next call, as redis-py does after a single command (the connections other calls are
    using stay open: closing the client would fail them all)."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            replies: list[Any] = await super().execute(raise_on_error, allow_redirections)
        except async_cluster.RedisCluster.ERRORS_ALLOW_RETRY as exc:
            if _lost_connection(exc):
                self.cluster_client._initialize = True
            raise
        lost = next((r for r in replies if _lost_connection(r)), None)
        if lost is not None:
            self.cluster_client._initialize = True
            raise lost
        return replies


class _AsyncCluster(async_cluster.RedisCluster):
    async def initialize(self, *args: Any, **kwargs: Any) -> _AsyncCluster:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            error = _layout_error(exc)
            if error is exc:
                raise
            raise error from exc
        return self

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return _AsyncClusterPipeline(self, transaction)  # type: ignore[abstract]


class _SyncCluster(sync_cluster.RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except RedisClusterException as exc:
            error = _layout_error(exc)
            if error is exc:
                raise
            raise error from exc
