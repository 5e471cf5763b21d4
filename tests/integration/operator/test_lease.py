"""The Lease elector (``leader_election``) against the emulator over real HTTP, on a clock of the test's.

Case matrix: the first candidate creates the Lease and leads, the second stands by; the leader
stops leading by the clock alone once the renew deadline passes without a renewal; the standby
takes over only after the Lease has not changed for the lease duration (by its own clock), and the
former leader, back, stands by; a write at a stale resourceVersion is refused (409) and leaves the
candidate a standby; a leader that stops releases the Lease, and a standby takes it at once; the
callbacks run on each change of leadership; a renewal that landed unseen (cancelled by the
stop after the server applied it) does not keep the release from happening.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import kopf
import pytest
from jobqueue_operator import kube_api, leader_election, tunables

from tests.support.emulator import RealisticEmulator

LEASES = "coordination.k8s.io/v1/leases"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def api(emulator: RealisticEmulator) -> AsyncIterator[kube_api.KubeApi]:
    client = kube_api.KubeApi(kopf.ConnectionInfo(server=str(emulator.url).rstrip("/")))
    yield client
    await client.close()


def elector(
    api: kube_api.KubeApi, identity: str, clock: Clock, changes: list[str] | None = None
) -> leader_election.LeaderElector:
    settings = tunables.LeaderElectionTunables(
        enabled=True,
        lease_name="ops",
        lease_namespace="default",
        identity=identity,
        lease_duration_seconds=15,
        renew_deadline_seconds=10,
        retry_period_seconds=2,
    )
    log = changes if changes is not None else []
    return leader_election.LeaderElector(
        lambda: api,
        settings,
        on_started_leading=lambda: log.append(f"{identity} leads"),
        on_stopped_leading=lambda: log.append(f"{identity} stops"),
        clock=clock,
    )


def holder(emulator: RealisticEmulator) -> str:
    return str((emulator.get_object(LEASES, "default", "ops") or {}).get("spec", {}).get("holderIdentity"))


async def test_one_leads_the_other_waits_for_expiry(
    emulator: RealisticEmulator, api: kube_api.KubeApi
) -> None:
    clock, changes = Clock(), []
    a, b = elector(api, "a", clock, changes), elector(api, "b", clock, changes)
    assert await a.once() and not await b.once()
    assert holder(emulator) == "a" and a.is_leader() and not b.is_leader()
    lease = emulator.get_object(LEASES, "default", "ops")
    assert lease is not None and lease["spec"]["leaseDurationSeconds"] == 15

    clock.now += 9.9
    assert a.is_leader()
    clock.now += 0.2  # past the renew deadline with no renewal: a stops by the clock alone
    assert not a.is_leader()
    clock.now += 4.8  # 14.9 s since b saw the Lease change: not expired yet for b
    assert not await b.once()
    clock.now += 0.2
    assert await b.once() and holder(emulator) == "b"
    assert not await a.once() and not a.is_leader()  # back, a sees b's Lease and stands by
    lease = emulator.get_object(LEASES, "default", "ops")
    assert lease is not None and lease["spec"]["leaseTransitions"] == 1
    # is_leader() turned false by the clock; a hears of it (its callback) at its next attempt.
    assert changes == ["a leads", "b leads", "a stops"]


async def test_renewals_keep_the_lease(emulator: RealisticEmulator, api: kube_api.KubeApi) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert await a.once()
    for _ in range(20):  # 40 s of renewals every 2 s: b never takes over
        clock.now += 2
        assert await a.once()
        assert not await b.once()
    assert holder(emulator) == "a"


async def test_a_stale_version_is_refused(emulator: RealisticEmulator, api: kube_api.KubeApi) -> None:
    clock = Clock()
    a = elector(api, "a", clock)
    assert await a.once()
    stale = leader_election.LeaseRecord.of(emulator.get_object(LEASES, "default", "ops") or {})
    clock.now += 2
    assert await a.once()  # the Lease moved on
    b = elector(api, "b", clock)
    with pytest.raises(kube_api.ApiError) as conflict:
        await api.patch_lease("default", "ops", {"metadata": {"resourceVersion": stale.version}, "spec": {}})
    assert conflict.value.status == 409
    assert not await b._take(api, stale) and holder(emulator) == "a"


async def test_a_leader_that_stops_releases_the_lease(
    emulator: RealisticEmulator, api: kube_api.KubeApi
) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert await a.once() and not await b.once()
    await a.stop()
    assert holder(emulator) == "" and not a.is_leader()
    assert await b.once(), "a released Lease is taken at once, without waiting for it to expire"


async def test_a_renewal_landed_unseen_does_not_keep_the_lease(
    emulator: RealisticEmulator, api: kube_api.KubeApi
) -> None:
    clock = Clock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert await a.once()
    # What a renewal cancelled by the stop leaves: applied by the server, its reply never read.
    await api.patch_lease(
        "default", "ops", {"spec": {"renewTime": leader_election.micro_time(clock.now + 1)}}
    )
    await a.stop()
    assert holder(emulator) == ""
    assert await b.once(), "the released Lease is taken at once"
