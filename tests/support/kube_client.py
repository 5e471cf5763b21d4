"""A minimal Kubernetes REST client for tests: async (aiohttp) and sync (urllib) twins.

Tests use it to act as "the user" against the emulator over real HTTP, exactly as kubectl would,
so every change goes through the emulator's API semantics (resourceVersion, watch events, ...)::

    api = AsyncKube(str(emulator.url))
    await api.create(JOBQUEUES, jobqueue_body("q1"), namespace="default")
    await api.patch(JOBQUEUES, "q1", {"spec": {"maxReplicas": 5}}, namespace="default")
    body = await api.get(JOBQUEUES, "q1", namespace="default")   # None if absent

Errors other than 404 on ``get``/``delete`` raise :class:`KubeError` with the status and the body.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
import kmock

Body = dict[str, Any]
MERGE = "application/merge-patch+json"

SECRETS = kmock.resource("", "v1", "secrets")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
JOBQUEUES = kmock.resource("jobqueue.dev", "v1alpha1", "jobqueues")
CLUSTER_SCOPED = {NAMESPACES, kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")}


class KubeError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


def path(
    resource: kmock.resource | str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
    **params: str,
) -> str:
    """The URL path of a resource collection, object or subresource."""
    res = kmock.resource(resource)
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if namespace is not None and res not in CLUSTER_SCOPED:
        base += f"/namespaces/{namespace}"
    url = f"{base}/{res.plural}"
    if name is not None:
        url += f"/{name}"
    if subresource is not None:
        url += f"/{subresource}"
    return url + (f"?{urllib.parse.urlencode(params)}" if params else "")


# ---------------------------------------------------------------------- bodies


def secret_body(name: str, data: dict[str, str] | None = None, **labels: str) -> Body:
    meta: Body = {"name": name, **({"labels": labels} if labels else {})}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "stringData": data or {},
    }


def deployment_body(name: str, replicas: int = 1, image: str = "busybox:1.36", **labels: str) -> Body:
    match = {"app": name, **labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": match},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {"containers": [{"name": "worker", "image": image}]},
            },
        },
    }


def jobqueue_body(name: str, spec: Body | None = None, **labels: str) -> Body:
    meta: Body = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "jobqueue.dev/v1alpha1", "kind": "JobQueue", "metadata": meta, "spec": spec or {}}


# ---------------------------------------------------------------------- clients


class AsyncKube:
    """Async REST calls over a private aiohttp session (close it, or use ``async with``)."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncKube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, url: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self._session.request(method, self.server + url, data=data, headers=headers) as response:
            text = await response.text()
            payload = json.loads(text) if text else None
            if response.status >= 400:
                raise KubeError(response.status, payload)
            return payload

    async def create(
        self, resource: kmock.resource | str, body: Body, namespace: str | None = "default"
    ) -> Body:
        return await self.request("POST", path(resource, namespace), body)  # type: ignore[no-any-return]

    async def get(
        self, resource: kmock.resource | str, name: str, namespace: str | None = "default"
    ) -> Body | None:
        try:
            return await self.request("GET", path(resource, namespace, name))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self, resource: kmock.resource | str, namespace: str | None = "default", **params: str
    ) -> list[Body]:
        return (await self.request("GET", path(resource, namespace, **params)))["items"]  # type: ignore[no-any-return]

    async def patch(
        self,
        resource: kmock.resource | str,
        name: str,
        patch: Any,
        namespace: str | None = "default",
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> Body:
        url = path(resource, namespace, name, subresource)
        return await self.request("PATCH", url, patch, content_type)  # type: ignore[no-any-return]

    async def delete(
        self, resource: kmock.resource | str, name: str, namespace: str | None = "default"
    ) -> Body | None:
        try:
            return await self.request("DELETE", path(resource, namespace, name))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


class SyncKube:
    """The blocking twin of :class:`AsyncKube` (for sync tests with an emulator in a thread)."""

    def __init__(self, server: str, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, url: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        req = urllib.request.Request(self.server + url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode()
            raise KubeError(exc.code, json.loads(text) if text else None) from None
        return json.loads(text) if text else None

    def create(self, resource: kmock.resource | str, body: Body, namespace: str | None = "default") -> Body:
        return self.request("POST", path(resource, namespace), body)  # type: ignore[no-any-return]

    def get(
        self, resource: kmock.resource | str, name: str, namespace: str | None = "default"
    ) -> Body | None:
        try:
            return self.request("GET", path(resource, namespace, name))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, resource: kmock.resource | str, namespace: str | None = "default", **params: str
    ) -> list[Body]:
        return self.request("GET", path(resource, namespace, **params))["items"]  # type: ignore[no-any-return]

    def patch(
        self,
        resource: kmock.resource | str,
        name: str,
        patch: Any,
        namespace: str | None = "default",
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> Body:
        return self.request("PATCH", path(resource, namespace, name, subresource), patch, content_type)  # type: ignore[no-any-return]

    def delete(
        self, resource: kmock.resource | str, name: str, namespace: str | None = "default"
    ) -> Body | None:
        try:
            return self.request("DELETE", path(resource, namespace, name))  # type: ignore[no-any-return]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
