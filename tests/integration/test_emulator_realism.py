"""The emulator behaves as an API server does where the operator depends on it, also in long runs.

Case matrix:

* matching a request costs the same however many were served: with no test reaction, no request
  is matched by scanning the request log (kmock's ``View.__contains__`` is never called), and a
  fault a test injects once (``[:1] << 500``) still fires exactly once;
* the request logs (the server's and each reaction's), each object's history and Events are
  bounded (Events expire after ``event_ttl``, with a DELETED watch event);
* requests are counted by client (bearer token, else User-Agent) and kind;
* `coordination.k8s.io/v1` leases are discoverable and served, a stale resourceVersion is 409;
* the API server's validation: a Deployment without an image, with a selector its template does
  not match, or with a label value over 63 characters is refused with 422 and the field, whether
  created or patched into that state (then nothing changes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kmock._internal import dsl

from tests.support.emulator import RealisticEmulator
from tests.support.kube_client import (
    DEPLOYMENTS,
    EVENTS,
    SECRETS,
    AsyncKube,
    KubeError,
    deployment_body,
    secret_body,
)


async def test_no_request_is_matched_by_scanning_the_log(
    emulator: RealisticEmulator, kube: AsyncKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[object] = []
    original = dsl.View.__contains__

    def counting(view: dsl.View, item: object) -> bool:
        scans.append(item)
        return original(view, item)

    monkeypatch.setattr(dsl.View, "__contains__", counting)
    await kube.create(SECRETS, secret_body("s1"))
    for _ in range(50):
        await kube.get(SECRETS, "s1")
    await kube.list(SECRETS)
    assert scans == []


async def test_a_fault_injected_once_fires_once(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    await kube.create(SECRETS, secret_body("s1"))
    fault = emulator["get /api/v1/namespaces/default/secrets/s1"][:1] << 500 << {"message": "boom"}
    with pytest.raises(KubeError) as failed:
        await kube.get(SECRETS, "s1")
    assert failed.value.status == 500
    for _ in range(3):
        assert await kube.get(SECRETS, "s1") is not None
    assert len(list(fault)) == 1


@pytest.mark.emulator(request_log_limit=20, history_limit=3)
async def test_logs_and_histories_are_bounded(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    await kube.create(SECRETS, secret_body("s1"))
    for index in range(30):
        await kube.patch(SECRETS, "s1", {"metadata": {"labels": {"n": str(index)}}})
    assert len(emulator._requests) <= 20
    assert all(len(payload._requests) <= 20 for payload in emulator._payloads)
    assert len(emulator._objects[SECRETS, "default", "s1"].history) == 3
    assert emulator.requests_served >= 31


@pytest.mark.emulator(event_ttl=0.0)
async def test_events_expire(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    first = await kube.create(EVENTS, {"metadata": {"generateName": "e-"}, "reason": "A"})
    await kube.create(EVENTS, {"metadata": {"generateName": "e-"}, "reason": "B"})
    names = [e["metadata"]["name"] for e in await kube.list(EVENTS)]
    assert first["metadata"]["name"] not in names and len(names) <= 1


async def test_requests_are_counted_by_client(emulator: RealisticEmulator) -> None:
    async with aiohttp.ClientSession(str(emulator.url), headers={"Authorization": "Bearer alice"}) as alice:
        for _ in range(3):
            async with alice.get("/api/v1/namespaces/default/secrets") as response:
                assert response.status == 200
        async with alice.post("/api/v1/namespaces/default/secrets", json=secret_body("x")) as response:
            assert response.status in (200, 201)
    counts = emulator.clients.of("alice")
    assert counts["GET secrets"] == 3 and counts["POST secrets"] == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("image"),
            "containers[0].image: Required",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(containers=[]),
            "spec.template.spec.containers: Required",
        ),
        (lambda d: d["spec"].update(selector={"matchLabels": {"app": "other"}}), "`selector` does not match"),
        (lambda d: d["metadata"].update(labels={"team": "t" * 64}), "must be no more than 63 characters"),
    ],
    ids=["no-image", "no-containers", "selector-mismatch", "long-label"],
)
async def test_invalid_deployments_are_refused(
    emulator: RealisticEmulator, kube: AsyncKube, mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    body = copy.deepcopy(deployment_body("d1"))
    mutate(body)
    with pytest.raises(KubeError) as refused:
        await kube.create(DEPLOYMENTS, body)
    assert refused.value.status == 422
    assert refused.value.body["message"].startswith('Deployment.apps "d1" is invalid: ')
    assert field in refused.value.body["message"]
    assert await kube.get(DEPLOYMENTS, "d1") is None


async def test_a_patch_into_an_invalid_state_changes_nothing(
    emulator: RealisticEmulator, kube: AsyncKube
) -> None:
    created = await kube.create(DEPLOYMENTS, deployment_body("d1"))
    with pytest.raises(KubeError) as refused:
        await kube.patch(DEPLOYMENTS, "d1", {"metadata": {"labels": {"team": "t" * 64}}})
    assert refused.value.status == 422
    assert await kube.get(DEPLOYMENTS, "d1") == created


async def test_leases_are_served_and_discoverable(emulator: RealisticEmulator, kube: AsyncKube) -> None:
    groups = await kube.request("GET", "/apis")
    assert "coordination.k8s.io" in {g["name"] for g in groups["groups"]}
    listed = await kube.request("GET", "/apis/coordination.k8s.io/v1")
    assert {r["name"] for r in listed["resources"]} >= {"leases"}
    lease = {"metadata": {"name": "l1"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    created = await kube.create("coordination.k8s.io/v1/leases", lease)
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": "b"}}
    with pytest.raises(KubeError) as conflict:
        await kube.patch("coordination.k8s.io/v1/leases", "l1", stale)
    assert conflict.value.status == 409 and created["spec"]["holderIdentity"] == "a"
