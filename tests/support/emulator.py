"""A Kubernetes API emulator realistic enough to run a real kopf operator and kubectl against.

``RealisticEmulator`` subclasses kmock's ``KubernetesEmulator`` (pinned: kmock==0.8) and replaces its
object store semantics with the ones of a real apiserver:

* CREATE fills ``generateName``, ``uid``, ``creationTimestamp``, ``generation`` and a
  ``resourceVersion`` from one global counter, refuses duplicates (409) and objects in
  namespaces that do not exist (404);
* PATCH understands merge, strategic-merge (a subset), apply and JSON patches, answers 409 to a stale
  ``resourceVersion`` and 422 to a failed JSON-patch ``test``; a no-op patch changes nothing;
  ``generation`` moves on spec changes only; ``/status`` and the main endpoint are isolated when the
  resource declares a status subresource; ``/scale`` works for Deployments and CRDs declaring it;
* PUT replaces, DELETE honours finalizers, preconditions, ``dryRun`` and ``propagationPolicy`` (owned
  objects are garbage-collected in the background unless ``Orphan``), deleting a Namespace deletes
  its content, deleting a CRD deletes its custom resources;
* LIST returns ``kind`` and the current ``resourceVersion``, supports label/field selectors and
  server-side Tables (``kubectl get`` printer columns);
* WATCH takes its snapshot and its position in the event log atomically, replays the log after
  ``?resourceVersion=N`` (410 if compacted), supports ``sendInitialEvents`` with the
  ``k8s.io/initial-events-end`` bookmark, periodic bookmarks, ``timeoutSeconds`` and is served as
  ``application/json``;
* discovery reports ``groupVersion: v1`` for the core group, no shortNames on subresources, and
  creating a CRD registers its resources before the ADDED event is published;
* validation of metadata (names, labels) and of Deployments (selector, containers, images) with the
  API server's 422 messages (``emulator_validation``);
* long runs stay representative: matching a request costs the same after a million requests as
  after one, the request logs, each object's history and the watch cache are bounded, Events
  expire after ``event_ttl`` as the API server's ``--event-ttl`` makes them, and requests are counted
  by client (``emulator_requests``).

All mutating code is synchronous, so each change is atomic in the emulator's event loop; watchers
are woken through a fresh ``asyncio.Event`` per change.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import copy
import dataclasses
import pathlib
import random
import string
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import apps, parsing, rendering

from tests.support import emulator_requests, emulator_validation, patching, resources, selectors

Key = tuple[kmock.resource, str | None, str]
Body = dict[str, Any]
Predicate = Callable[[Mapping[str, Any]], bool]
WATCH_HEADERS = {"Content-Type": "application/json"}
CORE_NAMESPACE_SUBRESOURCES = ("status", "finalize")
SECRETS = kmock.resource("", "v1", "secrets")
EVENTS = kmock.resource("", "v1", "events")


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 reads ``/api/v1/namespaces[/NAME[/status]]`` as "namespace NAME, no resource"."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[2] == "namespaces":
        rest = parts[3:]
        if len(rest) <= 1 or (len(rest) == 2 and rest[1] in CORE_NAMESPACE_SUBRESOURCES):
            return parsing.ParsedPath(
                group="",
                version=parts[1],
                plural="namespaces",
                namespace=None,
                name=rest[0] if rest and rest[0] else None,
                subresource=rest[1] if len(rest) == 2 else None,
            )
    return _ORIGINAL_PARSE_PATH(path)


_ORIGINAL_PARSE_PATH = getattr(parsing.parse_path, "original", parsing.parse_path)
_parse_path.original = _ORIGINAL_PARSE_PATH  # type: ignore[attr-defined]
parsing.parse_path = _parse_path


def check_kmock_internals() -> None:
    """Fail loudly if the kmock internals this module leans on have moved (see the smoke test)."""
    emulator_cls = kmock.KubernetesEmulator
    for name in (
        "_serve_list",
        "_serve_watch",
        "_serve_fetch",
        "_serve_create",
        "_serve_update",
        "_serve_delete",
        "_serve_version",
        "_serve_apis",
        "_serve_group",
        "_get_resources",
        "_handle",
        "_render_error",
    ):
        assert callable(getattr(emulator_cls, name, None)), f"kmock.KubernetesEmulator.{name} is gone"
    field_names = {field.name for field in attrs.fields(emulator_cls)}
    assert {"_objects", "_resources", "_requests", "_payloads"} <= field_names, field_names
    assert callable(getattr(apps.RawHandler, "_handle", None)), "kmock RawHandler._handle is gone"
    assert parsing.parse_path is _parse_path, "kmock parse_path is not patched (Request._parse moved?)"
    assert hasattr(rendering.Request, "_parse"), "kmock Request._parse is gone"
    assert {f.name for f in attrs.fields(parsing.ParsedPath)} == {
        "group",
        "version",
        "plural",
        "namespace",
        "name",
        "subresource",
    }


@dataclasses.dataclass
class _EventLog:
    """The watch events of one resource, ordered by resourceVersion; old ones are compacted."""

    rvs: list[int] = dataclasses.field(default_factory=list)
    events: list[Body] = dataclasses.field(default_factory=list)
    floor: int = 0  # a watch from a resourceVersion below this gets 410 Gone


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or None)


def _group_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def _qualified(resource: kmock.resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)


def _set_path(body: Body, path: str, value: Any) -> None:
    keys = [key for key in path.split(".") if key]
    target = body
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _normalize(resource: kmock.resource, body: Body) -> Body:
    """What admission does to a few built-ins: Secrets' ``stringData`` becomes base64 ``data``."""
    if resource == SECRETS and isinstance(body.get("stringData"), dict):
        data = dict(body.get("data") or {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body["data"] = data
    return body


def _spec_view(body: Mapping[str, Any], status_isolated: bool) -> dict[str, Any]:
    skipped = {"metadata", "status"} if status_isolated else {"metadata"}
    return {key: value for key, value in body.items() if key not in skipped}


@attrs.define(kw_only=True)
class RealisticEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with apiserver semantics; see the module docstring for the list."""

    builtins: bool = True  # register namespaces, events, secrets, pods, deployments, HPAs, CRDs...
    namespaces: tuple[str, ...] = ("default", "kube-system")
    enforce_namespaces: bool = True  # 404 on creating in a namespace that does not exist
    garbage_collection: bool = True  # delete owned objects when their owners are gone
    bookmark_interval: float = 20.0  # periodic BOOKMARKs on watches that allow them (seconds)
    # The watch cache per resource; older events are compacted (a watch from them gets 410 Gone).
    event_log_limit: int = 5_000
    request_log_limit: int = 10_000  # requests kept for assertions (the server's and each reaction's)
    history_limit: int = 8  # versions kept per object (kmock keeps every one otherwise)
    event_ttl: float = 3600.0  # seconds an Event lives, as the API server's --event-ttl default
    validate: bool = True  # refuse malformed metadata and Deployments with 422, as the API server does

    _rv: int = attrs.field(default=0, init=False)
    _logs: dict[kmock.resource, _EventLog] = attrs.field(factory=dict, init=False)
    _tick: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _extras: dict[kmock.resource, resources.ResourceExtras] = attrs.field(factory=dict, init=False)
    _crd_served: dict[str, list[kmock.resource]] = attrs.field(factory=dict, init=False)
    _uids: dict[str, Key] = attrs.field(factory=dict, init=False)
    _results: dict[rendering.Request, Body] = attrs.field(factory=dict, init=False)
    _watchers: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)
    _by_resource: dict[kmock.resource, dict[Key, None]] = attrs.field(factory=dict, init=False)
    _event_expiry: collections.deque[tuple[float, Key]] = attrs.field(factory=collections.deque, init=False)
    clients: emulator_requests.ClientTally = attrs.field(factory=emulator_requests.ClientTally, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Higher than kmock's own WATCH fallback: the same generator, served as application/json.
        (self.fallback**1)[kmock.action.WATCH] << kmock.headers(WATCH_HEADERS) << self._serve_watch
        self.fallback[kmock.method.PUT] << self._serve_result
        self.fallback[kmock.method.DELETE] << self._serve_result
        if self.builtins:
            for spec in resources.builtin_resources():
                self.register(spec)
        for namespace in self.namespaces:
            self.create_object(resources.NAMESPACES, {"metadata": {"name": namespace}})

    # ----------------------------------------------------------------- public, synchronous API
    # Call these from the emulator's event loop (or before it serves): they are atomic there.

    @property
    def resource_version(self) -> int:
        return self._rv

    def watchers(self, resource: kmock.resource | str) -> int:
        """How many watch streams of a resource are open now (wait for > 0 before racing a watcher)."""
        return self._watchers.get(kmock.resource(resource), 0)

    def register(self, spec: resources.ResourceSpec) -> None:
        """Make a resource discoverable and servable."""
        self._resources[spec.resource] = spec.info
        self._extras[spec.resource] = spec.extras

    def unregister(self, resource: kmock.resource) -> None:
        if resource in self._resources:
            del self._resources[resource]
        self._extras.pop(resource, None)

    def register_crd(self, crd: str | pathlib.Path | Mapping[str, Any]) -> Body:
        """Create a CRD (a body or a YAML file path) as ``kubectl apply`` would; returns the stored body."""
        body = resources.load_crd(crd) if isinstance(crd, str | pathlib.Path) else dict(crd)
        name = body["metadata"]["name"]
        if self.get_object(resources.CRD_RESOURCE, None, name) is not None:
            return self._update(resources.CRD_RESOURCE, None, name, None, body, "", replace=True)
        return self.create_object(resources.CRD_RESOURCE, body)

    def get_object(self, resource: kmock.resource | str, namespace: str | None, name: str) -> Body | None:
        """The current body, or None if absent (a copy: mutate it through the API methods)."""
        body = self._live((kmock.resource(resource), namespace, name))
        return copy.deepcopy(body) if body is not None else None

    def list_objects(self, resource: kmock.resource | str, namespace: str | None = None) -> list[Body]:
        res = kmock.resource(resource)
        return [
            copy.deepcopy(obj.raw)
            for key in self._keys_of(res)
            if not (obj := self._objects[key]).deleted and (namespace is None or key[1] == namespace)
        ]

    def create_object(
        self, resource: kmock.resource | str, body: Mapping[str, Any], namespace: str | None = None
    ) -> Body:
        return self._create(kmock.resource(resource), namespace, dict(body))

    def patch_object(
        self,
        resource: kmock.resource | str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str | None = None,
        content_type: str = patching.MERGE,
    ) -> Body:
        return self._update(kmock.resource(resource), namespace, name, subresource, patch, content_type)

    def delete_object(
        self,
        resource: kmock.resource | str,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
    ) -> Body:
        return self._delete(kmock.resource(resource), namespace, name, dict(options or {}))

    # ----------------------------------------------------------------- request dispatching

    @property
    def requests_served(self) -> int:
        return self.clients.total

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        self.clients.add(request)
        emulator_requests.trim(self._requests, self.request_log_limit)
        try:
            if request.resource is not None and request.resource.plural is not None:
                result = self._mutate(request)
                if result is not None:
                    self._results[request] = result
            return await self._dispatch(request)
        except kmock.KubernetesError as exc:
            return self._status_response(exc)
        except selectors.SelectorError as exc:
            return self._status_response(_error(400, "BadRequest", str(exc)))
        finally:
            self._results.pop(request, None)

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """kmock's ``RawHandler._handle`` (the first matching reaction answers), with each reaction's
        match decided in constant time where it can be (``emulator_requests.sees``)."""
        for payload in emulator_requests.ordered(self._payloads):
            if payload._disabled.is_set():
                continue
            seen = emulator_requests.sees(payload._source, request, self)
            if seen is None:
                seen = request in payload._source
            if not seen:
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:  # either mismatch or depletion
                payload._disabled.set()
            except NotImplementedError:  # matched, but non-actionable (nothing to respond with)
                pass
            finally:
                emulator_requests.trim(payload._requests, self.request_log_limit)
        raise NotImplementedError("no reaction matches the request; add a fallback")

    def _status_response(self, exc: kmock.KubernetesError) -> aiohttp.web.StreamResponse:
        return aiohttp.web.json_response(
            {
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "code": exc.status,
                "reason": exc.reason or "InternalError",
                "message": exc.message or exc.reason or "error",
                "details": exc.details or {},
            },
            status=exc.status,
        )

    def _mutate(self, request: rendering.Request) -> Body | None:
        resource = request.resource
        assert resource is not None
        dry_run = "dryRun" in request.params
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        name, namespace, data = request.name, request.namespace, request.data
        if request.action == kmock.action.CREATE:
            self._require_known(resource)
            return self._create(resource, namespace, data, dry_run=dry_run)
        if request.action == kmock.action.UPDATE and name is not None:
            self._require_known(resource)
            return self._update(
                resource, namespace, name, request.subresource, data, content_type, dry_run=dry_run
            )
        if request.method == kmock.method.PUT and name is not None:
            self._require_known(resource)
            return self._update(
                resource, namespace, name, request.subresource, data, "", replace=True, dry_run=dry_run
            )
        if request.action == kmock.action.DELETE and name is not None:
            self._require_known(resource)
            return self._delete(
                resource, namespace, name, data if isinstance(data, dict) else {}, dry_run=dry_run
            )
        if request.method == kmock.method.DELETE and name is None:
            self._require_known(resource)
            return self._delete_collection(request, dry_run=dry_run)
        return None

    async def _serve_result(self, request: rendering.Request) -> rendering.Payload:
        if request not in self._results:
            raise _error(405, "MethodNotAllowed", f"{request.method} is not supported on {request.url.path}")
        return self._results[request]

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        return await self._serve_result(request)

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return await self._serve_result(request)

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return await self._serve_result(request)

    # ----------------------------------------------------------------- resource facts

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # Not .get(): kmock's ResourcesArray creates missing entries on item access.
        return self._resources[resource] if resource in self._resources else None  # noqa: SIM401

    def _has_subresource(self, resource: kmock.resource, subresource: str) -> bool:
        info = self._info(resource)
        return info is not None and subresource in info.subresources

    def _kind(self, resource: kmock.resource) -> str:
        info = self._info(resource)
        return info.kind if info is not None and info.kind else str(resource.plural).capitalize()

    def _namespaced(self, resource: kmock.resource, namespace: str | None) -> bool:
        info = self._info(resource)
        return info.namespaced if info is not None and info.namespaced is not None else namespace is not None

    def _require_known(self, resource: kmock.resource) -> None:
        if resource not in self._resources and resource not in self._get_resources():
            raise _error(404, "NotFound", "the server could not find the requested resource")

    def _key(self, resource: kmock.resource, namespace: str | None, name: str) -> Key:
        return (resource, namespace if self._namespaced(resource, namespace) else None, name)

    def _live(self, key: Key) -> Body | None:
        if key in self._objects:
            obj = self._objects[key]
            if not obj.deleted:
                return obj.raw
        return None

    def _not_found(self, resource: kmock.resource, name: str) -> kmock.KubernetesError:
        kind = self._kind(resource)
        return _error(
            404,
            "NotFound",
            f'{_qualified(resource)} "{name}" not found',
            name=name,
            group=resource.group,
            kind=kind,
        )

    # ----------------------------------------------------------------- the event log

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _publish(self, resource: kmock.resource, event_type: str, body: Body) -> None:
        log = self._logs.setdefault(resource, _EventLog())
        log.rvs.append(int(body["metadata"]["resourceVersion"]))
        log.events.append({"type": event_type, "object": body})
        if len(log.rvs) > self.event_log_limit:
            cut = len(log.rvs) // 2
            log.floor = log.rvs[cut - 1]
            del log.rvs[:cut], log.events[:cut]
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _store(self, key: Key, body: Body) -> None:
        if key in self._objects:
            history = self._objects[key].history
            history.append(body)
            if len(history) > self.history_limit:
                del history[: len(history) - self.history_limit]
        else:
            self._objects[key] = body
            self._by_resource.setdefault(key[0], {})[key] = None

    def _keys_of(self, resource: kmock.resource) -> list[Key]:
        """Keys of one resource's objects (deleted ones too), without scanning the others."""
        return list(self._by_resource.get(resource, ()))

    def _expire_events(self) -> None:
        """Delete the Events older than ``event_ttl``, for good (a DELETED event is published)."""
        now = time.monotonic()
        while self._event_expiry and now - self._event_expiry[0][0] >= self.event_ttl:
            _, key = self._event_expiry.popleft()
            if self._live(key) is not None:
                self._delete(*key, {"propagationPolicy": "Orphan"})
            if key in self._objects and self._objects[key].deleted:
                del self._objects[key]
                self._by_resource.get(key[0], {}).pop(key, None)

    def _validate(self, resource: kmock.resource, body: Body) -> None:
        if not self.validate:
            return
        found = emulator_validation.problems(resource, body)
        if found:
            kind = self._kind(resource)
            qualified = f"{kind}.{resource.group}" if resource.group else kind
            name = str((body.get("metadata") or {}).get("name") or "")
            message = emulator_validation.message(qualified, name, found)
            causes = [{"field": path, "message": reason} for path, reason in found]
            raise _error(422, "Invalid", message, name=name, kind=kind, causes=causes)

    # ----------------------------------------------------------------- create

    def _create(
        self, resource: kmock.resource, namespace: str | None, data: Any, *, dry_run: bool = False
    ) -> Body:
        if not isinstance(data, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        body = _normalize(resource, copy.deepcopy(data))
        meta = body.setdefault("metadata", {})
        namespace = self._create_namespace(resource, namespace, meta)
        name = meta.get("name") or self._generate_name(resource, namespace, meta.get("generateName"))
        key: Key = (resource, namespace, name)
        if self._live(key) is not None:
            raise _error(409, "AlreadyExists", f'{_qualified(resource)} "{name}" already exists', name=name)
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=resources.now_rfc3339(), generation=1)
        body.setdefault("apiVersion", _group_version(resource))
        body.setdefault("kind", self._kind(resource))
        if self._has_subresource(resource, "status"):
            body.pop("status", None)
        if resource == resources.CRD_RESOURCE:
            body["status"] = resources.crd_status(body)
        elif resource == resources.NAMESPACES:
            body["status"] = {"phase": "Active"}
        self._validate(resource, body)
        if dry_run:
            return body
        meta["resourceVersion"] = self._next_rv()
        if resource == resources.CRD_RESOURCE:  # discoverable before anyone sees the ADDED event
            self._serve_crd(body)
        self._store(key, body)
        self._uids[meta["uid"]] = key
        self._publish(resource, "ADDED", body)
        if resource == EVENTS:
            self._event_expiry.append((time.monotonic(), key))
            self._expire_events()
        return body

    def _create_namespace(
        self, resource: kmock.resource, namespace: str | None, meta: dict[str, Any]
    ) -> str | None:
        if not self._namespaced(resource, namespace or meta.get("namespace")):
            meta.pop("namespace", None)
            return None
        if namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise _error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        namespace = namespace or meta.get("namespace") or "default"
        meta["namespace"] = namespace
        ns_body = self._live((resources.NAMESPACES, None, namespace))
        if self.enforce_namespaces and ns_body is None:
            raise _error(
                404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
            )
        if ns_body is not None and ns_body["metadata"].get("deletionTimestamp"):
            raise _error(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )
        return namespace

    def _generate_name(self, resource: kmock.resource, namespace: str | None, prefix: str | None) -> str:
        if not prefix:
            raise _error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        alphabet = string.ascii_lowercase + string.digits
        while True:
            name = prefix + "".join(random.choices(alphabet, k=5))
            if self._live((resource, namespace, name)) is None:
                return name

    # ----------------------------------------------------------------- patch & replace

    def _update(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        subresource: str | None,
        data: Any,
        content_type: str,
        *,
        replace: bool = False,
        dry_run: bool = False,
    ) -> Body:
        key = self._key(resource, namespace, name)
        old = self._live(key)
        if old is None:
            if content_type == patching.APPLY and subresource is None:
                return self._create(resource, namespace, patching.strip_directives(data), dry_run=dry_run)
            raise self._not_found(resource, name)
        if subresource is not None and (
            subresource not in ("status", "scale") or not self._has_subresource(resource, subresource)
        ):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        old = copy.deepcopy(old)
        if subresource == "scale":
            return self._update_scale(
                resource, key, old, data, content_type, replace=replace, dry_run=dry_run
            )
        patched = _normalize(resource, self._patched(old, data, content_type, replace=replace))
        new = self._reconcile(resource, old, patched, status_only=subresource == "status")
        return self._commit(resource, key, old, new, dry_run=dry_run)

    def _patched(self, old: Body, data: Any, content_type: str, *, replace: bool) -> Body:
        if isinstance(data, dict):
            wanted_rv = (data.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                name = old["metadata"]["name"]
                raise _error(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    name=name,
                )
        if replace:
            if not isinstance(data, dict):
                raise _error(400, "BadRequest", "the request body must be a JSON object")
            return copy.deepcopy(data)
        try:
            return patching.apply(old, data, content_type)
        except patching.PatchConflict as exc:
            raise _error(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from exc

    def _reconcile(self, resource: kmock.resource, old: Body, patched: Body, *, status_only: bool) -> Body:
        """Keep what a client may not change: identity, timestamps and the other side of ``/status``."""
        if status_only:
            new = copy.deepcopy(old)
            if "status" in patched:
                new["status"] = patched["status"]
            else:
                new.pop("status", None)
        else:
            new = patched
            if self._has_subresource(resource, "status"):
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
        if not isinstance(new.get("metadata"), dict):
            new["metadata"] = {}
        old_meta, meta = old["metadata"], new["metadata"]
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _error(
                    422,
                    "Invalid",
                    f"metadata.finalizers: Forbidden: no new finalizers can be added if the object "
                    f"is being deleted, found new finalizers {sorted(added)!r}",
                )
        return new

    def _commit(self, resource: kmock.resource, key: Key, old: Body, new: Body, *, dry_run: bool) -> Body:
        if new == old:
            return old  # a no-op: no new resourceVersion, no watch event
        if not new["metadata"].get("deletionTimestamp"):
            self._validate(resource, new)
        isolated = self._has_subresource(resource, "status")
        if _spec_view(new, isolated) != _spec_view(old, isolated):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        if resource == resources.CRD_RESOURCE:  # discoverable before anyone sees the MODIFIED event
            self._serve_crd(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(key, new, propagation="Background")
        else:
            self._store(key, new)
            self._publish(resource, "MODIFIED", new)
        return new

    def _scale_view(self, resource: kmock.resource, body: Body) -> Body:
        extras = self._extras.get(resource, resources.ResourceExtras())
        selector = (
            selectors.jsonpath(body, extras.scale_selector_path) if extras.scale_selector_path else None
        )
        if isinstance(selector, Mapping):
            selector = ",".join(f"{k}={v}" for k, v in selector.items())
        meta = body["metadata"]
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                key: meta[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in meta
            },
            "spec": {"replicas": selectors.jsonpath(body, extras.scale_spec_path) or 0},
            "status": {
                "replicas": selectors.jsonpath(body, extras.scale_status_path) or 0,
                "selector": selector or "",
            },
        }

    def _update_scale(
        self,
        resource: kmock.resource,
        key: Key,
        old: Body,
        data: Any,
        content_type: str,
        *,
        replace: bool,
        dry_run: bool,
    ) -> Body:
        scale = self._patched(self._scale_view(resource, old), data, content_type, replace=replace)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _error(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}")
        new = copy.deepcopy(old)
        _set_path(new, self._extras.get(resource, resources.ResourceExtras()).scale_spec_path, replicas)
        return self._scale_view(resource, self._commit(resource, key, old, new, dry_run=dry_run))

    # ----------------------------------------------------------------- delete

    def _delete(
        self,
        resource: kmock.resource,
        namespace: str | None,
        name: str,
        options: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> Body:
        key = self._key(resource, namespace, name)
        old = self._live(key)
        if old is None:
            raise self._not_found(resource, name)
        old = copy.deepcopy(old)
        meta = old["metadata"]
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != meta.get(field):
                raise _error(
                    409,
                    "Conflict",
                    f"Precondition failed: {field} in precondition: {preconditions[field]}, "
                    f"{field} in object meta: {meta.get(field)}",
                )
        if meta.get("deletionTimestamp"):
            return old
        new = copy.deepcopy(old)
        if dry_run:
            return new
        new["metadata"]["resourceVersion"] = self._next_rv()
        if meta.get("finalizers"):
            new["metadata"].update(deletionTimestamp=resources.now_rfc3339(), deletionGracePeriodSeconds=0)
            self._store(key, new)
            self._publish(resource, "MODIFIED", new)
        else:
            self._remove(key, new, propagation=str(options.get("propagationPolicy") or "Background"))
        return new

    def _delete_collection(self, request: rendering.Request, *, dry_run: bool) -> Body:
        assert request.resource is not None
        predicate = self._predicate(request)
        deleted = [
            self._delete(resource, ns, name, {}, dry_run=dry_run)
            for (resource, ns, name), obj in list(self._objects.items())
            if resource == request.resource and not obj.deleted and predicate(obj.raw)
        ]
        return self._list_body(request.resource, deleted)

    def _remove(self, key: Key, final: Body, *, propagation: str) -> None:
        """Finally delete an object: publish DELETED, then cascade as the apiserver's controllers do."""
        resource = key[0]
        self._store(key, final)
        self._objects[key].delete()
        self._uids.pop(final["metadata"].get("uid", ""), None)
        if resource == resources.CRD_RESOURCE:
            self._unserve_crd(final["metadata"]["name"])
        self._publish(resource, "DELETED", final)
        if resource == resources.NAMESPACES:
            for other, ns, name in [
                k for k, obj in self._objects.items() if k[1] == key[2] and not obj.deleted
            ]:
                self._delete(other, ns, name, {})
        if self.garbage_collection and propagation != "Orphan":
            self._collect_garbage(final["metadata"].get("uid"))

    def _unserve_crd(self, crd_name: str) -> None:
        """Stop serving a deleted CRD's resources and delete its custom resources."""
        for resource in self._crd_served.pop(crd_name, []):
            self.unregister(resource)
            for key in [k for k, obj in self._objects.items() if k[0] == resource and not obj.deleted]:
                body = copy.deepcopy(self._objects[key].raw)
                body["metadata"]["resourceVersion"] = self._next_rv()
                self._store(key, body)
                self._objects[key].delete()
                self._uids.pop(body["metadata"].get("uid", ""), None)
                self._publish(resource, "DELETED", body)

    def _serve_crd(self, crd: Body) -> None:
        """Serve (or re-serve, after a change) the resources a CRD declares."""
        name = crd["metadata"]["name"]
        specs = resources.crd_resources(crd)
        for resource in self._crd_served.get(name, []):
            if resource not in {spec.resource for spec in specs}:
                self.unregister(resource)
        for spec in specs:
            self.register(spec)
        self._crd_served[name] = [spec.resource for spec in specs]

    def _collect_garbage(self, owner_uid: str | None) -> None:
        if not owner_uid:
            return
        for key, obj in list(self._objects.items()):
            if obj.deleted:
                continue
            owners = [ref.get("uid") for ref in obj.raw.get("metadata", {}).get("ownerReferences") or []]
            if owner_uid in owners and not any(uid in self._uids for uid in owners):
                self._delete(key[0], key[1], key[2], {})

    # ----------------------------------------------------------------- reads

    def _predicate(self, request: rendering.Request) -> Predicate:
        assert request.resource is not None
        namespace = request.namespace if self._namespaced(request.resource, request.namespace) else None
        name = request.name
        by_labels = selectors.label_selector(request.params.get("labelSelector"))
        by_fields = selectors.field_selector(request.params.get("fieldSelector"))

        def check(body: Mapping[str, Any]) -> bool:
            meta = body.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return by_labels(body) and by_fields(body)

        return check

    def _matching(self, request: rendering.Request) -> list[Body]:
        predicate = self._predicate(request)
        found = [
            (key[1] or "", key[2], obj.raw)
            for key in self._keys_of(request.resource)
            if not (obj := self._objects[key]).deleted
        ]
        return [body for _, _, body in sorted(found, key=lambda item: item[:2]) if predicate(body)]

    def _list_body(self, resource: kmock.resource, items: list[Body]) -> Body:
        return {
            "apiVersion": _group_version(resource),
            "kind": f"{self._kind(resource)}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _table(self, resource: kmock.resource, items: list[Body]) -> Body:
        extras = self._extras.get(resource, resources.ResourceExtras(columns=(resources.AGE,)))
        if not extras.columns:
            extras = dataclasses.replace(extras, columns=(resources.AGE,))
        return resources.render_table(items, extras, str(self._rv))

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        self._require_known(request.resource)
        items = self._matching(request)
        if resources.wants_table(request.headers.get("Accept")):
            return self._table(request.resource, items)
        return self._list_body(request.resource, items)

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        resource, name = request.resource, request.name
        assert resource is not None and name is not None
        self._require_known(resource)
        body = self._live(self._key(resource, request.namespace, name))
        if body is None:
            raise self._not_found(resource, name)
        if request.subresource is None or (
            request.subresource == "status" and self._has_subresource(resource, "status")
        ):
            if resources.wants_table(request.headers.get("Accept")):
                return self._table(resource, [body])
            return body
        if request.subresource == "scale" and self._has_subresource(resource, "scale"):
            return self._scale_view(resource, body)
        raise _error(404, "NotFound", "the server could not find the requested resource")

    def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        # Validate synchronously: errors raised here become proper Status responses, not broken streams.
        resource = request.resource
        assert resource is not None
        self._require_known(resource)
        predicate = self._predicate(request)
        params = request.params
        since = params.get("resourceVersion") or ""
        initial = params.get("sendInitialEvents") == "true"

        # Snapshot, position and wake-up signal are taken together: nothing can slip in between.
        log = self._logs.setdefault(resource, _EventLog())
        position, tick = self._rv, self._tick
        if initial or since in ("", "0"):
            events = [{"type": "ADDED", "object": body} for body in self._matching(request)]
        elif not since.isdigit() or int(since) < log.floor:
            events = [self._expired(since)]
        else:
            start = bisect.bisect_right(log.rvs, int(since))
            events = [event for event in log.events[start:] if predicate(event["object"])]
        if initial:
            events.append(self._bookmark(resource, position, initial_end=True))
        return self._watch_stream(request, log, events, position, tick, predicate)

    async def _watch_stream(
        self,
        request: rendering.Request,
        log: _EventLog,
        events: list[Body],
        position: int,
        tick: asyncio.Event,
        predicate: Predicate,
    ) -> AsyncIterator[rendering.Payload]:
        resource = request.resource
        assert resource is not None
        self._watchers[resource] = self._watchers.get(resource, 0) + 1
        try:
            yield b""  # send the headers now, even if nothing happens for a while
            for event in events:
                yield event
            if events and events[-1]["type"] == "ERROR":
                return
            async for event in self._live_events(request, log, position, tick, predicate):
                yield event
        finally:
            self._watchers[resource] -= 1

    async def _live_events(
        self,
        request: rendering.Request,
        log: _EventLog,
        position: int,
        tick: asyncio.Event,
        predicate: Predicate,
    ) -> AsyncIterator[Body]:
        assert request.resource is not None
        loop = asyncio.get_running_loop()
        timeout = request.params.get("timeoutSeconds")
        deadline = loop.time() + float(timeout) if timeout else None
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        while deadline is None or loop.time() < deadline:
            wait = (
                self.bookmark_interval
                if deadline is None
                else min(self.bookmark_interval, deadline - loop.time())
            )
            try:
                await asyncio.wait_for(tick.wait(), timeout=max(wait, 0.0))
            except TimeoutError:
                if bookmarks and (deadline is None or loop.time() < deadline):
                    yield self._bookmark(request.resource, self._rv)
                continue
            fresh = log.events[bisect.bisect_right(log.rvs, position) :]
            position, tick = self._rv, self._tick
            for event in fresh:
                if predicate(event["object"]):
                    yield event

    def _bookmark(self, resource: kmock.resource, rv: int, *, initial_end: bool = False) -> Body:
        meta: Body = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {
                "apiVersion": _group_version(resource),
                "kind": self._kind(resource),
                "metadata": meta,
            },
        }

    @staticmethod
    def _expired(since: str) -> Body:
        return {
            "type": "ERROR",
            "object": {
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": f"too old resource version: {since}",
            },
        }

    # ----------------------------------------------------------------- discovery

    def _versions(self, group: str) -> list[str]:
        def priority(version: str) -> tuple[int, str]:
            return (2 if "alpha" in version else 1 if "beta" in version else 0, version)

        found = {str(res.version) for res in self._get_resources() if res.group == group and res.version}
        return sorted(found, key=priority)

    def _group_body(self, group: str) -> Body:
        versions = self._versions(group)
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    async def _serve_apis(self, request: rendering.Request) -> rendering.Payload:
        groups = sorted({str(res.group) for res in self._get_resources() if res.group and res.version})
        return {"apiVersion": "v1", "kind": "APIGroupList", "groups": [self._group_body(g) for g in groups]}

    async def _serve_group(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        group = str(request.resource.group)
        if not group or not self._versions(group):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        return {"apiVersion": "v1", "kind": "APIGroup", **self._group_body(group)}

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        found = [
            res
            for res in self._get_resources()
            if res.group == group and res.version == version and res.plural
        ]
        if not found and group != "":
            raise _error(404, "NotFound", "the server could not find the requested resource")
        entries: list[Body] = []
        for res in sorted(found, key=lambda r: str(r.plural)):
            info = self._info(res) or kmock.ResourceInfo()
            namespaced = info.namespaced if info.namespaced is not None else True
            kind = self._kind(res)
            entry: Body = {
                "name": res.plural,
                "singularName": info.singular or kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": sorted(info.verbs or resources.ALL_VERBS),
            }
            if info.shortnames:
                entry["shortNames"] = sorted(info.shortnames)
            if info.categories:
                entry["categories"] = sorted(info.categories)
            entries.append(entry)
            for sub in sorted(info.subresources):
                sub_entry: Body = {
                    "name": f"{res.plural}/{sub}",
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": list(resources.SUBRESOURCE_VERBS),
                }
                if sub == "scale":
                    sub_entry.update(kind="Scale", group="autoscaling", version="v1")
                entries.append(sub_entry)
        return {
            "apiVersion": "v1",
            "kind": "APIResourceList",
            "groupVersion": f"{group}/{version}" if group else str(version),
            "resources": entries,
        }


# Seconds the server waits for open requests at shutdown before cancelling them. Watch streams of
# an operator that already stopped would otherwise hold every test's teardown for aiohttp's 60 s.
SHUTDOWN_TIMEOUT_S = 1.0


def shorten_shutdown(server: Any) -> None:
    """Apply SHUTDOWN_TIMEOUT_S to a started ``kmock.Server``."""
    runner = getattr(server.server, "runner", None)
    if runner is not None:
        runner._shutdown_timeout = SHUTDOWN_TIMEOUT_S
