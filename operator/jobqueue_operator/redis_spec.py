"""``spec.queue.redis`` of the ``JobQueue``: where the queue lives and how to reach it, from Secrets.

The URL (any form of ``worker_runtime.endpoint``: one server, ``redis+sentinel://``,
``redis+cluster://``) carries the ACL user and password; TLS material comes from Secrets too: the
CA (``caSecretRef``) and, for servers that require one, a client certificate and its key
(``clientCertSecretRef``: a ``kubernetes.io/tls`` Secret by default). Worker pods get them as
read-only volumes and ``JOBQUEUE_REDIS_TLS*`` variables (``worker_tls``); the operator's probe
reads them itself (``redis_tls``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import Field

from jobqueue_operator import spec_base

# Where worker pods find the TLS files (volumes from the Secrets, read-only).
TLS_MOUNT_DIR: Final = "/etc/jobqueue/redis-tls"
CA_VOLUME: Final = "jobqueue-redis-ca"
CLIENT_VOLUME: Final = "jobqueue-redis-client"
CA_FILE: Final = "ca.crt"
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"


class ClientCertSecretRef(spec_base.KubeModel):
    """A client certificate and its key (PEM), two keys of one Secret."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    cert_key: str = Field(
        "tls.crt", min_length=1, max_length=253, description="Key holding the certificate (PEM)."
    )
    key_key: str = Field("tls.key", min_length=1, max_length=253, description="Key holding its private key.")


class TlsSpec(spec_base.KubeModel):
    """TLS towards Redis (``rediss://`` URLs turn it on as well)."""

    enabled: bool = Field(
        False, description="Connect with TLS. Off by default: most in-cluster Redis is plain."
    )
    ca_secret_ref: spec_base.SecretKeyRef | None = Field(
        None, description="CA bundle (PEM) to verify the server; absent means the system trust store."
    )
    client_cert_secret_ref: ClientCertSecretRef | None = Field(
        None, description="Client certificate and key, for a server that requires one (tls-auth-clients)."
    )
    insecure_skip_verify: bool = Field(
        False, description="Skip certificate verification. Off by default; only for test setups."
    )


class RedisSpec(spec_base.KubeModel):
    """Where the queue lives. The URL comes from a Secret, never inline, since it holds a password."""

    url_secret_ref: spec_base.SecretKeyRef = Field(
        description="Secret key holding the Redis URL (redis://, rediss://, redis+sentinel://, "
        "redis+cluster://), with the ACL user and password if any."
    )
    tls: TlsSpec = spec_base.section(TlsSpec, "TLS settings; plain TCP unless enabled.")


@dataclass
class WorkerTls:
    """What a worker container needs for ``TlsSpec``: variables, volumes and their mounts."""

    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def worker_tls(tls: TlsSpec) -> WorkerTls:
    """The Secrets as read-only volumes and ``JOBQUEUE_REDIS_TLS*`` pointing at their files."""
    out = WorkerTls()

    def env(name: str, value: str) -> None:
        out.env.append({"name": f"JOBQUEUE_REDIS_TLS{name}", "value": value})

    if tls.enabled:
        env("", "true")
    if tls.insecure_skip_verify:
        env("_INSECURE_SKIP_VERIFY", "true")
    if tls.ca_secret_ref is not None:
        items = [{"key": tls.ca_secret_ref.key, "path": CA_FILE}]
        _mount(out, CA_VOLUME, tls.ca_secret_ref.name, items)
        env("_CA_FILE", f"{TLS_MOUNT_DIR}/ca/{CA_FILE}")
    client = tls.client_cert_secret_ref
    if client is not None:
        items = [{"key": client.cert_key, "path": CERT_FILE}, {"key": client.key_key, "path": KEY_FILE}]
        _mount(out, CLIENT_VOLUME, client.name, items)
        env("_CERT_FILE", f"{TLS_MOUNT_DIR}/client/{CERT_FILE}")
        env("_KEY_FILE", f"{TLS_MOUNT_DIR}/client/{KEY_FILE}")
    return out


def _mount(out: WorkerTls, volume: str, secret: str, items: list[dict[str, str]]) -> None:
    # Read-only for whichever non-root user the image runs as (the files exist in this pod only).
    source = {"secretName": secret, "items": items, "defaultMode": 0o444}
    out.volumes.append({"name": volume, "secret": source})
    where = "ca" if volume == CA_VOLUME else "client"
    out.mounts.append({"name": volume, "mountPath": f"{TLS_MOUNT_DIR}/{where}", "readOnly": True})
