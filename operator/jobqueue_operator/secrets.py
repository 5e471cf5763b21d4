"""The Redis URL of a JobQueue, read from the Secret its spec names."""

from __future__ import annotations

import base64
import binascii

from jobqueue_operator import kube_api, spec


class SecretProblem(Exception):
    """The URL cannot be read: ``reason`` is a condition reason, the message says what to fix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def redis_url(api: kube_api.KubeApi, jobqueue: spec.JobQueue) -> str:
    """The URL in ``spec.queue.redis.urlSecretRef``; ``SecretProblem`` if the Secret or key is missing."""
    ref = jobqueue.spec.queue.redis.url_secret_ref
    namespace = jobqueue.metadata.namespace or "default"
    secret = await api.get_secret(namespace, ref.name)
    where = f"spec.queue.redis.urlSecretRef: Secret {namespace}/{ref.name}"
    if secret is None:
        raise SecretProblem("SecretNotFound", f"{where} does not exist")
    data = secret.get("data") or {}
    if ref.key not in data:
        raise SecretProblem("SecretKeyNotFound", f"{where} has no key {ref.key!r}")
    try:
        url = base64.b64decode(data[ref.key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretProblem("SecretKeyInvalid", f"{where} key {ref.key!r} is not base64 text") from None
    if not url:
        raise SecretProblem("SecretKeyInvalid", f"{where} key {ref.key!r} is empty")
    return url
