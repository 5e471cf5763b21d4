"""The test harness itself: the realistic emulator's API semantics and a real kopf operator on it.

Case matrix:

* emulator API (no operator): generateName/uid/creationTimestamp/generation; resourceVersion
  conflicts (409 merge patch, 422 JSON-patch ``test``); status subresource isolation; no-op patches;
  ``/api/v1/namespaces`` paths; selectors; LIST kind + resourceVersion; WATCH replay after
  ``?resourceVersion=N``, 410 when compacted, initial-events-end bookmark, JSON content type;
  discovery; CRD registration before ADDED; finalizers; garbage collection; scale subresource;
* a tiny kopf operator (defined below, fresh registry per test) via ``OperatorThread``: owned
  Deployment with ownerReferences, Events, status from a timer, spec change -> generation -> timer,
  deletion releases the finalizer, an injected HTTP 500 is retried and recovered;
* a smoke test that fails loudly if the kmock internals the emulator relies on change.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from typing import Any

import kopf
import pytest

from tests.support import emulator as emulator_mod
from tests.support.emulator import RealisticEmulator
from tests.support.kube_client import (
    DEPLOYMENTS,
    EVENTS,
    JOBQUEUES,
    NAMESPACES,
    SECRETS,
    AsyncKube,
    KubeError,
    deployment_body,
    jobqueue_body,
    secret_body,
)
from tests.support.kube_fixtures import TEST_CRD_PATH, StartOperator
from tests.support.wait import wait_for

FINALIZER = "jobqueue.dev/finalizer"


# --------------------------------------------------------------------------- the tiny operator


def register(registry: kopf.OperatorRegistry) -> None:
    """Handlers of a miniature JobQueue operator, registered into the given registry only."""

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="jobqueue.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="jobqueue.dev", key="last-handled-configuration"
        )

    @kopf.on.create("jobqueue.dev", "v1alpha1", "jobqueues", registry=registry)
    async def create_workers(body: kopf.Body, name: str, namespace: str, memo: kopf.Memo, **_: Any) -> None:
        deployment = deployment_body(f"{name}-worker", replicas=int(body["spec"].get("minReplicas", 1)))
        kopf.adopt(deployment, owner=body)
        async with AsyncKube(memo.server) as api:
            await api.create(DEPLOYMENTS, deployment, namespace=namespace)
        kopf.info(body, reason="WorkersCreated", message=f"Deployment {name}-worker created")

    @kopf.timer("jobqueue.dev", "v1alpha1", "jobqueues", interval=0.2, backoff=0.2, registry=registry)
    async def observe(
        spec: kopf.Spec,
        meta: kopf.Meta,
        name: str,
        namespace: str,
        memo: kopf.Memo,
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        async with AsyncKube(memo.server) as api:
            deployment = await api.get(DEPLOYMENTS, f"{name}-worker", namespace=namespace)
        if deployment is None:
            raise kopf.TemporaryError("the Deployment does not exist yet", delay=0.2)
        patch.status["replicas"] = spec.get("maxReplicas", 1)
        patch.status["observedGeneration"] = meta["generation"]
        patch.status["phase"] = "Ready"


async def start(start_operator: StartOperator, emulator: RealisticEmulator) -> None:
    emulator.register_crd(TEST_CRD_PATH)
    await start_operator(register=register, memo=kopf.Memo(server=str(emulator.url).rstrip("/")))


# --------------------------------------------------------------------------- emulator semantics


def test_kmock_internals_are_what_the_emulator_expects() -> None:
    assert importlib.metadata.version("kmock") == "0.8", "the emulator subclass is written against kmock 0.8"
    assert importlib.metadata.version("kopf") == "1.45.2", "the harness is verified against kopf 1.45.2"
    emulator_mod.check_kmock_internals()


async def test_create_fills_identity_and_generate_name(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    first = await kube.create(EVENTS, {"metadata": {"generateName": "kopf-event-"}, "reason": "A"})
    second = await kube.create(EVENTS, {"metadata": {"generateName": "kopf-event-"}, "reason": "B"})
    assert (
        first["metadata"]["name"].startswith("kopf-event-")
        and first["metadata"]["name"] != second["metadata"]["name"]
    )
    meta = (await kube.create(SECRETS, secret_body("s1", {"token": "abc"})))["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    assert int(meta["resourceVersion"]) > int(second["metadata"]["resourceVersion"])
    assert (await kube.get(SECRETS, "s1"))["data"] == {"token": "YWJj"}  # type: ignore[index]
    with pytest.raises(KubeError) as exc:
        await kube.create(SECRETS, secret_body("s1"))
    assert exc.value.status == 409
    with pytest.raises(KubeError) as exc:
        await kube.create(SECRETS, secret_body("s2"), namespace="missing")
    assert exc.value.status == 404


async def test_resource_versions_generation_and_status_isolation(
    emulator: RealisticEmulator, kube: AsyncKube
) -> None:
    created = await kube.create(DEPLOYMENTS, deployment_body("d1"))
    rv = created["metadata"]["resourceVersion"]
    stale = {"metadata": {"resourceVersion": str(int(rv) - 1)}, "spec": {"replicas": 2}}
    with pytest.raises(KubeError) as exc:
        await kube.patch(DEPLOYMENTS, "d1", stale)
    assert exc.value.status == 409
    test_op = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}]
    with pytest.raises(KubeError) as exc:
        await kube.patch(DEPLOYMENTS, "d1", test_op, content_type="application/json-patch+json")
    assert exc.value.status == 422

    patched = await kube.patch(DEPLOYMENTS, "d1", {"spec": {"replicas": 3}, "status": {"replicas": 9}})
    assert patched["metadata"]["generation"] == 2 and "status" not in patched
    status = await kube.patch(
        DEPLOYMENTS, "d1", {"status": {"replicas": 3}, "spec": {"replicas": 7}}, subresource="status"
    )
    assert status["status"] == {"replicas": 3} and status["spec"]["replicas"] == 3
    assert status["metadata"]["generation"] == 2  # status changes do not bump it
    labelled = await kube.patch(DEPLOYMENTS, "d1", {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 2
    noop = await kube.patch(DEPLOYMENTS, "d1", {"metadata": {"labels": {"x": "y"}}})
    assert noop["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]

    scale = await kube.patch(DEPLOYMENTS, "d1", {"spec": {"replicas": 5}}, subresource="scale")
    assert (
        scale["kind"] == "Scale"
        and scale["spec"]["replicas"] == 5
        and "app=d1" in scale["status"]["selector"]
    )
    assert emulator.get_object(DEPLOYMENTS, "default", "d1")["spec"]["replicas"] == 5  # type: ignore[index]


async def test_namespaces_selectors_and_list_shape(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    namespaces = await kube.request("GET", "/api/v1/namespaces")
    assert namespaces["kind"] == "NamespaceList" and int(namespaces["metadata"]["resourceVersion"]) > 0
    assert {"default", "kube-system"} <= {ns["metadata"]["name"] for ns in namespaces["items"]}
    await kube.create(NAMESPACES, {"metadata": {"name": "team-a"}}, namespace=None)
    assert (await kube.get(NAMESPACES, "team-a", namespace=None))["status"]["phase"] == "Active"  # type: ignore[index]

    await kube.create(SECRETS, secret_body("a", tier="web"))
    await kube.create(SECRETS, secret_body("b", tier="db"))
    await kube.create(SECRETS, secret_body("c", tier="db"), namespace="team-a")
    names = [s["metadata"]["name"] for s in await kube.list(SECRETS, labelSelector="tier in (db,cache)")]
    assert names == ["b"]
    everywhere = await kube.list(SECRETS, namespace=None, labelSelector="tier=db,!missing")
    assert [s["metadata"]["name"] for s in everywhere] == ["b", "c"]
    assert [s["metadata"]["name"] for s in await kube.list(SECRETS, fieldSelector="metadata.name!=a")] == [
        "b"
    ]
    with pytest.raises(KubeError) as exc:
        await kube.list(SECRETS, labelSelector="tier in db")
    assert exc.value.status == 400

    discovery = await kube.request("GET", "/api/v1")
    assert discovery["groupVersion"] == "v1"
    subresources = [r for r in discovery["resources"] if "/" in r["name"]]
    assert subresources and all("shortNames" not in r for r in subresources)


async def read_events(emulator: RealisticEmulator, url: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    async with emulator.get(url) as response:
        events = [json.loads(await response.content.readline()) for _ in range(count)]
        return response.headers["Content-Type"], events


async def test_watch_replays_after_resource_version(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    await kube.create(SECRETS, secret_body("w1"))
    listed = await kube.request("GET", "/api/v1/namespaces/default/secrets")
    since = listed["metadata"]["resourceVersion"]
    await kube.patch(SECRETS, "w1", {"metadata": {"labels": {"step": "2"}}})
    await kube.delete(SECRETS, "w1")

    url = f"/api/v1/namespaces/default/secrets?watch=true&resourceVersion={since}"
    content_type, events = await read_events(emulator, url, 2)
    assert content_type.startswith("application/json")
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]

    url = "/api/v1/namespaces/default/secrets?watch=true&sendInitialEvents=true"
    _, events = await read_events(emulator, url, 1)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


@pytest.mark.emulator(event_log_limit=4)
async def test_watch_from_a_compacted_version_is_gone(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    for index in range(6):
        await kube.create(SECRETS, secret_body(f"s{index}"))
    _, events = await read_events(
        emulator, "/api/v1/namespaces/default/secrets?watch=true&resourceVersion=1", 1
    )
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


async def test_live_watch_sees_changes_made_while_connecting(
    emulator: RealisticEmulator, kube: AsyncKube
) -> None:
    async with emulator.get("/apis/apps/v1/namespaces/default/deployments?watch=true") as response:
        await wait_for(lambda: emulator.watchers(DEPLOYMENTS) == 1, message="the watch is open")
        for index in range(5):
            await kube.create(DEPLOYMENTS, deployment_body(f"d{index}"))
        lines = [json.loads(await response.content.readline()) for _ in range(5)]
    assert [line["object"]["metadata"]["name"] for line in lines] == [f"d{i}" for i in range(5)]
    await wait_for(lambda: emulator.watchers(DEPLOYMENTS) == 0, message="the watch is closed")


async def test_crd_finalizers_and_garbage_collection(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    with pytest.raises(KubeError) as exc:
        await kube.create(JOBQUEUES, jobqueue_body("q0"))
    assert exc.value.status == 404  # no CRD yet

    emulator.register_crd(TEST_CRD_PATH)
    discovery = await kube.request("GET", "/apis/jobqueue.dev/v1alpha1")
    assert {r["name"] for r in discovery["resources"]} == {"jobqueues", "jobqueues/status"}
    owner = await kube.create(JOBQUEUES, {**jobqueue_body("q1"), "status": {"phase": "Ignored"}})
    assert "status" not in owner
    dependent = deployment_body("q1-worker")
    dependent["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "jobqueue.dev/v1alpha1",
            "kind": "JobQueue",
            "name": "q1",
            "uid": owner["metadata"]["uid"],
        }
    ]
    await kube.create(DEPLOYMENTS, dependent)
    await kube.patch(JOBQUEUES, "q1", {"metadata": {"finalizers": [FINALIZER]}})

    deleting = await kube.delete(JOBQUEUES, "q1")
    assert deleting is not None and deleting["metadata"]["deletionTimestamp"]
    assert await kube.get(JOBQUEUES, "q1") is not None
    with pytest.raises(KubeError) as exc:
        await kube.patch(JOBQUEUES, "q1", {"metadata": {"finalizers": [FINALIZER, "another"]}})
    assert exc.value.status == 422
    await kube.patch(JOBQUEUES, "q1", {"metadata": {"finalizers": None}})
    assert await kube.get(JOBQUEUES, "q1") is None
    assert await kube.get(DEPLOYMENTS, "q1-worker") is None  # collected with its owner


# --------------------------------------------------------------------------- a real kopf operator


async def test_operator_creates_owned_deployment_events_and_status(
    emulator: RealisticEmulator, kube: AsyncKube, start_operator: StartOperator
) -> None:
    await start(start_operator, emulator)
    queue = await kube.create(
        JOBQUEUES, jobqueue_body("q1", {"queue": "emails", "minReplicas": 2, "maxReplicas": 4})
    )

    deployment = await wait_for(lambda: kube.get(DEPLOYMENTS, "q1-worker"), message="the worker Deployment")
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == queue["metadata"]["uid"] and owner["kind"] == "JobQueue" and owner["controller"]
    assert deployment["spec"]["replicas"] == 2

    def workers_created() -> list[dict[str, Any]]:
        return [
            event
            for event in emulator.list_objects(EVENTS, "default")
            if event["reason"] == "WorkersCreated"
            and event["involvedObject"]["uid"] == queue["metadata"]["uid"]
        ]

    await wait_for(workers_created, message="the WorkersCreated Event")
    body = await wait_for(
        lambda: (
            emulator.get_object(JOBQUEUES, "default", "q1") if _status(emulator, "q1").get("phase") else None
        ),
        message="status written by the timer",
    )
    assert body["status"]["replicas"] == 4 and body["metadata"]["finalizers"] == [FINALIZER]

    changed = await kube.patch(JOBQUEUES, "q1", {"spec": {"maxReplicas": 7}})
    assert changed["metadata"]["generation"] == 2
    await wait_for(
        lambda: _status(emulator, "q1").items() >= {"replicas": 7, "observedGeneration": 2}.items(),
        message="the timer saw the spec change",
    )

    await kube.delete(JOBQUEUES, "q1")
    await wait_for(
        lambda: emulator.get_object(JOBQUEUES, "default", "q1") is None, message="finalizer released"
    )


async def test_operator_retries_an_injected_api_error(
    emulator: RealisticEmulator, kube: AsyncKube, start_operator: StartOperator
) -> None:
    failures = (
        emulator["get /apis/apps/v1/namespaces/default/deployments/q5-worker"][:2]
        << 500
        << {"message": "boom"}
    )
    await start(start_operator, emulator)
    await kube.create(JOBQUEUES, jobqueue_body("q5", {"maxReplicas": 3}))

    await wait_for(lambda: _status(emulator, "q5").get("replicas") == 3, message="status after the errors")
    assert len(list(failures)) == 2


def _status(emulator: RealisticEmulator, name: str) -> dict[str, Any]:
    body = emulator.get_object(JOBQUEUES, "default", name)
    return dict((body or {}).get("status") or {})


async def test_operator_threads_stop_cleanly(
    emulator: RealisticEmulator, start_operator: StartOperator
) -> None:
    emulator.register_crd(TEST_CRD_PATH)
    memo = kopf.Memo(server=str(emulator.url).rstrip("/"))
    operator = await start_operator(register=register, memo=memo)
    await wait_for(lambda: emulator.watchers(JOBQUEUES) > 0, message="kopf watches jobqueues")
    await asyncio.to_thread(operator.stop)
    assert not operator.running
    await wait_for(lambda: emulator.watchers(JOBQUEUES) == 0, message="kopf closed its watches")
