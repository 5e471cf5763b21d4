"""Where Redis is and how to reach it: the URL forms the runtime accepts, and TLS options (pure, no I/O).

- ``redis://[[user]:password@]host[:6379][/db]``: one server (``rediss://``: over TLS);
- ``unix:///path/to/redis.sock[?db=N]``: one server on a Unix socket;
- ``redis+sentinel://[[user]:password@]host[:26379][,host[:port]...]/master[/db]``: the master named
  ``master`` of a Sentinel set, found through any of the sentinels listed (``rediss+sentinel://``:
  TLS to the sentinels and the data nodes);
- ``redis+cluster://[[user]:password@]host[:6379][,host[:port]...][/0]``: a Redis Cluster, from any
  of the nodes listed, which tell the client the rest (``rediss+cluster://``: over TLS).

The user and password in the URL are the data nodes' (master, replicas, cluster nodes), percent-
encoded. Sentinels that need a password of their own take it as query parameters,
``?sentinel_password=...`` (and ``sentinel_username=...``). Other query parameters are redis-py's
connection options (``socket_timeout``, ``health_check_interval``, ...), applied to every data node.

``parse`` turns a URL into an ``Endpoint``; ``connection.connect`` makes the client. A malformed URL
is a ``ConfigurationError`` whose message never shows the password.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from worker_runtime.errors import ConfigurationError

SENTINEL_PORT = 26379
REDIS_PORT = 6379


class Topology(enum.StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": (Topology.STANDALONE, False),
    "rediss": (Topology.STANDALONE, True),
    "unix": (Topology.STANDALONE, False),
    "redis+sentinel": (Topology.SENTINEL, False),
    "rediss+sentinel": (Topology.SENTINEL, True),
    "redis+cluster": (Topology.CLUSTER, False),
    "rediss+cluster": (Topology.CLUSTER, True),
}
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS towards Redis. ``enabled`` turns it on for a ``redis://`` URL (a ``rediss`` scheme always
    does); the CA (a file, or PEM text in ``ca_data``) replaces the system trust store; a client
    certificate and key (files: Python's ssl module loads them from files only) are for servers
    that ask for one (``tls-auth-clients yes``). ``insecure_skip_verify`` checks neither the
    certificate nor the host name: for test setups only."""

    enabled: bool = False
    ca_file: str = ""
    ca_data: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    @property
    def has_material(self) -> bool:
        return bool(self.ca_file or self.ca_data or self.cert_file or self.key_file)

    def client_options(self) -> dict[str, object]:
        """redis-py's ``ssl_*`` options for these settings (only the ones given)."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigurationError("TLS: a client certificate needs its key and a key its certificate")
        options: dict[str, object] = {}
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        if self.ca_data:
            options["ssl_ca_data"] = self.ca_data
        if self.cert_file:
            options["ssl_certfile"] = self.cert_file
            options["ssl_keyfile"] = self.key_file
        if self.insecure_skip_verify:
            options["ssl_cert_reqs"] = "none"
            options["ssl_check_hostname"] = False
        return options


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed Redis URL.

    ``url`` is a single-server URL redis-py parses (``redis://`` or ``rediss://``, or ``unix://``):
    for Sentinel and Cluster it carries what every data node shares (credentials, db, options) and
    the first node as its host. ``nodes`` are the sentinels, or the cluster's seed nodes.
    """

    topology: Topology
    url: str
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()
    master: str = ""
    sentinel_options: tuple[tuple[str, str], ...] = ()

    def with_tls(self) -> Endpoint:
        """The same endpoint over TLS (for ``TlsOptions.enabled`` with a plain scheme)."""
        if self.tls:
            return self
        if self.url.startswith("unix:"):
            raise ConfigurationError("TLS is on, but the Redis URL is a Unix socket (unix://)")
        return replace(self, tls=True, url="rediss:" + self.url.split(":", 1)[1])


def parse(url: str) -> Endpoint:
    """The endpoint of a URL of any form in the module's table; ``ConfigurationError`` if malformed."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"Redis URL {redacted(url)!r}: unknown scheme {scheme + '://' if scheme else '(none)'}; "
            "use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// (docs/redis.md)"
        )
    topology, tls = _SCHEMES[scheme]
    if topology is Topology.STANDALONE:
        return Endpoint(topology, url, tls)
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    default_port = SENTINEL_PORT if topology is Topology.SENTINEL else REDIS_PORT
    nodes = tuple(_node(text, default_port, url) for text in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    query = parse_qsl(parts.query, keep_blank_values=True)
    sentinel_options = tuple((k, v) for k, v in query if k in SENTINEL_OPTIONS)
    rest = urlencode([(k, v) for k, v in query if k not in SENTINEL_OPTIONS])
    if topology is Topology.SENTINEL:
        if not path:
            raise ConfigurationError(
                f"Redis URL {redacted(url)!r}: no master name; "
                "use redis+sentinel://host:26379[,host:port...]/<master name>[/db]"
            )
        master, db = path[0], _db(path[1:], url)
    else:
        if sentinel_options:
            raise ConfigurationError(
                f"Redis URL {redacted(url)!r}: sentinel_* options need redis+sentinel://"
            )
        master, db = "", _db(path, url)
        if db != 0:
            raise ConfigurationError(f"Redis URL {redacted(url)!r}: a Redis Cluster has database 0 only")
    host, port = nodes[0]
    shown_host = f"[{host}]" if ":" in host else host
    auth = f"{userinfo}@" if userinfo else ""
    single = f"{'rediss' if tls else 'redis'}://{auth}{shown_host}:{port}/{db}" + (f"?{rest}" if rest else "")
    return Endpoint(topology, single, tls, nodes, master, sentinel_options)


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):  # [ipv6]:port
        host, _, after = text[1:].partition("]")
        port = after.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ConfigurationError(f"Redis URL {redacted(url)!r}: a host is missing in the host list")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"Redis URL {redacted(url)!r}: port {port!r} of {host} is not a port")
    return host, int(port)


def _db(path: list[str], url: str) -> int:
    if not path:
        return 0
    if len(path) > 1 or not path[0].isdigit():
        raise ConfigurationError(f"Redis URL {redacted(url)!r}: {'/'.join(path)!r} is not a database number")
    return int(path[0])


def redacted(url: str) -> str:
    """``url`` with its password (userinfo and ``*password=`` options) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    path, question, query = tail.partition("?")
    if question:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(f"{k}{eq}{'***' if 'password' in k.lower() else v}" for k, eq, v in pairs)
    return f"{scheme}://{netloc}{slash}{path}{question}{query}"
