"""The thin async Kubernetes client of the operator: aiohttp with the credentials kopf logged in with.

Every call names the ``(apiGroup, resource, verb)`` it needs in ``CALLS``; a unit test renders the
chart's RBAC and checks that it grants exactly these plus what kopf itself needs (``KOPF_CALLS``).

The server and credentials come from the operator's memo (set by the login handler of ``cli``, or
by whoever embeds the operator), never from module globals, so several operators in one process
(tests) each talk to their own API server.

Writes are gated: a ``KubeApi`` built with ``may_write`` refuses every request but a GET
(``NotLeading``) while ``may_write()`` is false, so a standby replica cannot write whatever code
path tries; only the Lease calls (``lease=True``) bypass the gate.
"""

from __future__ import annotations

import importlib.metadata
import json
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import kopf

from jobqueue_operator import spec, tunables

Body = dict[str, Any]
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"


def _product_version() -> str:
    try:
        return importlib.metadata.version("jobqueue")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


USER_AGENT: Final = f"{spec.OPERATOR_NAME}/{_product_version()}"


@dataclass(frozen=True, order=True)
class ApiCall:
    """One permission: verb on resource (``deployments/scale`` for a subresource) in an API group."""

    group: str
    resource: str
    verb: str


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        url = f"{base}/{self.plural}"
        if name is not None:
            url += f"/{urllib.parse.quote(name)}"
        return url + (f"/{subresource}" if subresource else "")

    def call(self, verb: str, subresource: str | None = None) -> ApiCall:
        return ApiCall(self.group, f"{self.plural}/{subresource}" if subresource else self.plural, verb)


DEPLOYMENTS: Final = Resource("apps", "v1", "deployments")
PODS: Final = Resource("", "v1", "pods")
SECRETS: Final = Resource("", "v1", "secrets")
HPAS: Final = Resource("autoscaling", "v2", "horizontalpodautoscalers")
JOBQUEUES: Final = Resource(spec.GROUP, spec.VERSION, spec.PLURAL)
EVENTS: Final = Resource("", "v1", "events")
LEASES: Final = Resource("coordination.k8s.io", "v1", "leases")

# Every call of this module; keep in step with the methods of ``KubeApi`` (a test checks both ways).
CALLS: Final = frozenset(
    {
        DEPLOYMENTS.call("get"),
        DEPLOYMENTS.call("list"),
        DEPLOYMENTS.call("create"),
        DEPLOYMENTS.call("patch"),
        DEPLOYMENTS.call("patch", "scale"),
        PODS.call("list"),
        PODS.call("patch"),
        SECRETS.call("get"),
        HPAS.call("list"),
        JOBQUEUES.call("patch"),
        JOBQUEUES.call("patch", "status"),
        EVENTS.call("create"),
    }
)

# The Lease of leader election, in the operator's own namespace only (a Role there, not a ClusterRole).
LEASE_CALLS: Final = frozenset({LEASES.call("get"), LEASES.call("create"), LEASES.call("patch")})

# What kopf does on the operator's behalf: it only watches (the handlers persist nothing, so kopf
# writes no annotation, finalizer or status); it finds the namespaces it serves and notices the CRD.
KOPF_CALLS: Final = frozenset(
    {
        ApiCall(spec.GROUP, spec.PLURAL, "list"),
        ApiCall(spec.GROUP, spec.PLURAL, "watch"),
        ApiCall("", "namespaces", "list"),
        ApiCall("", "namespaces", "watch"),
        ApiCall("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ApiCall("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
)


class ApiError(Exception):
    """An HTTP error answer of the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class NotLeading(Exception):
    """A write was refused before it was sent: this replica does not hold the Lease."""


def connection_from_memo(memo: Mapping[str, Any]) -> kopf.ConnectionInfo | None:
    """The API server to talk to: ``memo['connection']`` (a ConnectionInfo) or ``memo['server']``;
    ``None`` when neither is there (the login handler provides it then)."""
    info = memo.get("connection")
    if isinstance(info, kopf.ConnectionInfo):
        return info
    server = memo.get("server")
    if isinstance(server, str) and server:
        return kopf.ConnectionInfo(server=server)
    return None


def _ssl_context(info: kopf.ConnectionInfo, scratch: Path) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return True
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        cert, key = scratch / "client.crt", scratch / "client.key"
        cert.write_bytes(_bytes(info.certificate_data))
        key.write_bytes(_bytes(info.private_key_data))
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _auth_headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        return {"Authorization": aiohttp.BasicAuth(info.username, info.password).encode()}
    return {}


class KubeApi:
    """The calls the operator makes, over one aiohttp session (create it in the operator's loop)."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        settings: tunables.ApiTunables | None = None,
        *,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        settings = settings if settings is not None else tunables.ApiTunables()
        self.server = info.server.rstrip("/")
        self.may_write = may_write
        self._scratch = tempfile.TemporaryDirectory(prefix="jobqueue-operator-")
        ssl_context = _ssl_context(info, Path(self._scratch.name))
        connector = aiohttp.TCPConnector(ssl=ssl_context, limit=settings.connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **_auth_headers(info)},
            timeout=aiohttp.ClientTimeout(total=settings.timeout_seconds),
        )

    async def close(self) -> None:
        await self._session.close()
        self._scratch.cleanup()

    async def _request(
        self, method: str, url: str, body: Any = None, content_type: str = "", *, lease: bool = False
    ) -> Any:
        if method != "GET" and not lease and self.may_write is not None and not self.may_write():
            raise NotLeading(f"{method} {url}: not the leader")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type or "application/json"} if data is not None else {}
        async with self._session.request(method, self.server + url, data=data, headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, _message(text))
            return json.loads(text) if text else None

    async def _get_or_none(self, url: str) -> Body | None:
        try:
            found: Body = await self._request("GET", url)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return found

    # -- deployments

    async def get_deployment(self, namespace: str, name: str) -> Body | None:
        return await self._get_or_none(DEPLOYMENTS.path(namespace, name))

    async def list_deployments(self, namespace: str, label_selector: str) -> list[Body]:
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        listed = await self._request("GET", f"{DEPLOYMENTS.path(namespace)}?{query}")
        return list(listed.get("items") or [])

    async def create_deployment(self, namespace: str, body: Body) -> Body:
        created: Body = await self._request("POST", DEPLOYMENTS.path(namespace), body)
        return created

    async def patch_deployment(
        self, namespace: str, name: str, patch: Any, *, json_patch: bool = False
    ) -> Body:
        """A merge patch, or an RFC 6902 JSON patch (a list of operations) with ``json_patch``."""
        kind = JSON_PATCH if json_patch else MERGE_PATCH
        patched: Body = await self._request("PATCH", DEPLOYMENTS.path(namespace, name), patch, kind)
        return patched

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        patch = {"spec": {"replicas": replicas}}
        await self._request("PATCH", DEPLOYMENTS.path(namespace, name, "scale"), patch, MERGE_PATCH)

    # -- pods

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        listed = await self._request("GET", f"{PODS.path(namespace)}?{query}")
        return list(listed.get("items") or [])

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        patch = {"metadata": {"annotations": dict(annotations)}}
        await self._request("PATCH", PODS.path(namespace, name), patch, MERGE_PATCH)

    # -- secrets and autoscalers

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        return await self._get_or_none(SECRETS.path(namespace, name))

    async def list_hpas(self, namespace: str) -> list[Body]:
        """HorizontalPodAutoscalers of the namespace; none where the API server does not serve them."""
        try:
            listed = await self._request("GET", HPAS.path(namespace))
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
        return list(listed.get("items") or [])

    # -- the JobQueue's status and Events about it

    async def patch_jobqueue_status(self, namespace: str, name: str, status: Body) -> Body | None:
        """Merge ``status`` into the JobQueue's status; the object as written, or ``None`` if it is gone."""
        patch = {"status": status}
        url = JOBQUEUES.path(namespace, name, "status")
        try:
            patched: Body = await self._request("PATCH", url, patch, MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return patched

    async def patch_jobqueue(self, namespace: str, name: str, patch: Body) -> Body | None:
        """Merge ``patch`` into the JobQueue (metadata only: finalizers); ``None`` if it is gone."""
        try:
            patched: Body = await self._request("PATCH", JOBQUEUES.path(namespace, name), patch, MERGE_PATCH)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return patched

    async def post_event(self, namespace: str, event: Body) -> None:
        await self._request("POST", EVENTS.path(namespace), event)

    # -- the Lease of leader election (never gated: it is how a replica becomes the leader)

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._get_or_none(LEASES.path(namespace, name))

    async def create_lease(self, namespace: str, body: Body) -> Body:
        created: Body = await self._request("POST", LEASES.path(namespace), body, lease=True)
        return created

    async def patch_lease(self, namespace: str, name: str, patch: Body) -> Body:
        """A merge patch; one carrying ``metadata.resourceVersion`` fails with 409 if the Lease moved on."""
        url = LEASES.path(namespace, name)
        patched: Body = await self._request("PATCH", url, patch, MERGE_PATCH, lease=True)
        return patched


def _message(text: str) -> str:
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("reason") or text[:200])
    return text[:200]
