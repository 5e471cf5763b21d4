"""The Redis URL of a JobQueue, read from the Secret its spec names."""

from __future__ import annotations

import base64
import binascii
import time

from jobqueue_operator import kube_api, spec


class SecretProblem(Exception):
    """The URL cannot be read: ``reason`` is a condition reason, the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# URLs read successfully are reused this long: most JobQueues share one Secret, and reading it on
# every pass of every object would be most of the operator's API traffic. A rotated URL is picked
# up within this time; a missing Secret or key is never cached, and a URL whose probe failed is
# forgotten, so a fix shows on the next pass.
CACHE_SECONDS = 10.0

SecretKey = tuple[str, str, str]


def key_of(jobqueue: spec.JobQueue) -> SecretKey:
    ref = jobqueue.spec.queue.redis.url_secret_ref
    return (jobqueue.metadata.namespace or "default", ref.name, ref.key)


class UrlCache:
    """Redis URLs by Secret reference; one per operator."""

    def __init__(self, ttl: float = CACHE_SECONDS) -> None:
        self.ttl = ttl
        self._urls: dict[SecretKey, tuple[float, str]] = {}

    async def redis_url(self, api: kube_api.KubeApi, jobqueue: spec.JobQueue) -> str:
        """The URL in ``spec.queue.redis.urlSecretRef``; ``SecretProblem`` if the Secret or key is missing."""
        key = key_of(jobqueue)
        cached = self._urls.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        url = await _read(api, *key)
        self._urls[key] = (time.monotonic(), url)
        return url

    def forget(self, jobqueue: spec.JobQueue) -> None:
        self._urls.pop(key_of(jobqueue), None)


async def _read(api: kube_api.KubeApi, namespace: str, name: str, key: str) -> str:
    secret = await api.get_secret(namespace, name)
    where = f"spec.queue.redis.urlSecretRef: Secret {namespace}/{name}"
    if secret is None:
        raise SecretProblem("SecretNotFound", f"{where} does not exist")
    data = secret.get("data") or {}
    if key not in data:
        raise SecretProblem("SecretKeyNotFound", f"{where} has no key {key!r}")
    try:
        url = base64.b64decode(data[key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretProblem("SecretKeyInvalid", f"{where} key {key!r} is not base64 text") from None
    if not url:
        raise SecretProblem("SecretKeyInvalid", f"{where} key {key!r} is empty")
    return url
