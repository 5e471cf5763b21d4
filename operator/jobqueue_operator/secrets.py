"""The Redis URL of a JobQueue, and its TLS material, read from the Secrets its spec names.

What the key holds must be a Redis URL (``URL_SCHEMES``, a host, a valid port): anything else is
``SecretKeyInvalid``, naming the Secret and the key but never echoing the value (it may be a
password). Problems are never cached, so a fixed Secret is read again on the next pass.
TLS material (``spec.queue.redis.tls``) is PEM text: the CA goes to the client as text, a client
certificate and key as files (Python's ssl module loads those from files only), written once per
content under the operator's writable temporary directory (its root filesystem is read-only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Final

from jobqueue_operator import kube_api, spec, status
from worker_runtime.endpoint import TlsOptions


class SecretProblem(Exception):
    """The URL cannot be read: ``reason`` is a condition reason, the message says what to fix."""

    def __init__(self, reason: status.Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


SecretKey = tuple[str, str, str]

URL_SCHEMES: Final = (
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_SCHEME: Final = re.compile(r"^[a-z][a-z0-9+.-]{0,15}$")


def url_problem(url: str) -> str | None:
    """Why ``url`` is no Redis URL, in words that never repeat the value; None when it is one."""
    wanted = ", ".join(f"{scheme}://" for scheme in URL_SCHEMES)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in URL_SCHEMES:
        seen = f"its scheme is {scheme!r}" if _SCHEME.match(scheme) else "it has no URL scheme"
        return f"does not hold a Redis URL ({wanted}): {seen}"
    try:
        parts = urllib.parse.urlsplit(url)
        if "+" in scheme:  # host:port,host:port...: sentinels or cluster nodes, each address its own
            return (
                None
                if parts.netloc.rpartition("@")[2]
                else f"does not hold a valid Redis URL ({wanted}): it names no host"
            )
        parts.port  # noqa: B018  (raises ValueError for a port that is no number in range)
    except ValueError:
        return f"does not hold a valid Redis URL ({wanted}): the port is not a number in 1..65535"
    if not parts.hostname:
        return f"does not hold a valid Redis URL ({wanted}): it names no host"
    return None


def key_of(jobqueue: spec.JobQueue) -> SecretKey:
    ref = jobqueue.spec.queue.redis.url_secret_ref
    return (jobqueue.metadata.namespace or "default", ref.name, ref.key)


@dataclass(frozen=True)
class RedisTarget:
    """Where a JobQueue's queue lives: the URL and the TLS options of its clients."""

    url: str
    tls: TlsOptions | None = None


class UrlCache:
    """Redis URLs and TLS material by Secret reference, each reused for ``ttl`` seconds
    (``tunables.SecretTunables``); one per operator. A missing Secret or key is never cached, and
    ``forget`` drops what a JobQueue's failed probe read, so a fix shows on the next pass."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._texts: dict[SecretKey, tuple[float, str]] = {}

    async def _text(self, api: kube_api.KubeApi, key: SecretKey, field: str) -> str:
        cached = self._texts.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        text = await _read(api, *key, field)
        self._texts[key] = (time.monotonic(), text)
        return text

    async def redis_url(self, api: kube_api.KubeApi, jobqueue: spec.JobQueue) -> str:
        """The URL in ``spec.queue.redis.urlSecretRef``; ``SecretProblem`` if the Secret or key is missing."""
        return await self._text(api, key_of(jobqueue), "urlSecretRef")

    async def redis_target(self, api: kube_api.KubeApi, jobqueue: spec.JobQueue) -> RedisTarget:
        """The URL and, when ``spec.queue.redis.tls`` asks for anything, the TLS options."""
        url = await self.redis_url(api, jobqueue)
        tls = jobqueue.spec.queue.redis.tls
        if not (tls.enabled or tls.ca_secret_ref or tls.client_cert_secret_ref or tls.insecure_skip_verify):
            return RedisTarget(url)
        namespace = jobqueue.metadata.namespace or "default"
        ca = ""
        if tls.ca_secret_ref is not None:
            ref = tls.ca_secret_ref
            ca = await self._text(api, (namespace, ref.name, ref.key), "tls.caSecretRef")
        cert = key = ""
        client = tls.client_cert_secret_ref
        if client is not None:
            where = "tls.clientCertSecretRef"
            cert = _pem_file(await self._text(api, (namespace, client.name, client.cert_key), where))
            key = _pem_file(await self._text(api, (namespace, client.name, client.key_key), where))
        options = TlsOptions(tls.enabled, "", ca, cert, key, tls.insecure_skip_verify)
        return RedisTarget(url, options)

    def forget(self, jobqueue: spec.JobQueue) -> None:
        namespace = jobqueue.metadata.namespace or "default"
        self._texts.pop(key_of(jobqueue), None)
        tls = jobqueue.spec.queue.redis.tls
        if tls.ca_secret_ref is not None:
            self._texts.pop((namespace, tls.ca_secret_ref.name, tls.ca_secret_ref.key), None)
        if tls.client_cert_secret_ref is not None:
            ref = tls.client_cert_secret_ref
            self._texts.pop((namespace, ref.name, ref.cert_key), None)
            self._texts.pop((namespace, ref.name, ref.key_key), None)


def _pem_file(text: str) -> str:
    """A file holding ``text`` (readable by the operator only), named by its content's digest."""
    directory = os.path.join(tempfile.gettempdir(), "jobqueue-redis-tls")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, hashlib.sha256(text.encode()).hexdigest()[:32] + ".pem")
    if not os.path.exists(path):
        descriptor = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.replace(path + ".new", path)
    return path


async def _read(api: kube_api.KubeApi, namespace: str, name: str, key: str, field: str) -> str:
    secret = await api.get_secret(namespace, name)
    where = f"spec.queue.redis.{field}: Secret {namespace}/{name}"
    if secret is None:
        raise SecretProblem(status.Reason.SECRET_NOT_FOUND, f"{where} does not exist")
    data = secret.get("data") or {}
    if key not in data:
        raise SecretProblem(status.Reason.SECRET_KEY_NOT_FOUND, f"{where} has no key {key!r}")
    try:
        text = base64.b64decode(data[key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretProblem(
            status.Reason.SECRET_KEY_INVALID, f"{where} key {key!r} is not base64 text"
        ) from None
    if not text:
        raise SecretProblem(status.Reason.SECRET_KEY_INVALID, f"{where} key {key!r} is empty")
    problem = url_problem(text) if field == "urlSecretRef" else None
    if problem is not None:
        raise SecretProblem(status.Reason.SECRET_KEY_INVALID, f"{where} key {key!r} {problem}")
    return text
