"""The JobQueues the operator serves (``served``), without I/O.

Case matrix: a body becomes a member with its parsed spec, pause and status; due after
pollingInterval (half a tick of slack), never while busy; the spec is parsed again only on a new
generation; an invalid spec is kept as the error; the same name with a new uid is a fresh member
(policy state not carried over); an object being deleted is forgotten.
"""

from __future__ import annotations

from typing import Any

import pytest
from jobqueue_operator import policy, served, spec


def body(generation: int = 1, uid: str = "u1", **changes: Any) -> dict[str, Any]:
    scaling = {"maxReplicas": 4, "pollingInterval": 5, "targets": {"backlogPerReplica": 2}}
    out: dict[str, Any] = {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "q1", "namespace": "team", "uid": uid, "generation": generation},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"template": {"spec": {"containers": [{"name": "w", "image": "w"}]}}},
            "scaling": scaling,
        },
        "status": {"desiredReplicas": 2, "policy": {"enqueuedTotal": 7}},
    }
    for key, value in changes.items():
        out[key] = value
    return out


def test_a_body_becomes_a_member() -> None:
    members = served.ServedJobQueues()
    member = members.observe(body())
    assert member is not None and member.key == ("team", "q1") and len(members) == 1
    assert member.jobqueue is not None and member.error is None and member.interval == 5
    assert member.status["desiredReplicas"] == 2 and member.paused_by is None
    assert member.reference == {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "namespace": "team",
        "name": "q1",
        "uid": "u1",
    }
    assert member.policy_state() == policy.PolicyState.from_dict({"enqueuedTotal": 7})


@pytest.mark.parametrize(
    ("last_pass", "busy", "due"),
    [(None, False, True), (100.0, False, False), (95.5, False, True), (None, True, False)],
    ids=["never-passed", "just-passed", "interval-minus-half-tick", "busy"],
)
def test_due(last_pass: float | None, busy: bool, due: bool) -> None:
    members = served.ServedJobQueues()
    member = members.observe(body())
    assert member is not None
    member.last_pass, member.busy = last_pass, busy
    assert (members.due(100.0, tick=1.0) == [member]) is due


def test_spec_is_parsed_again_only_on_a_new_generation() -> None:
    members = served.ServedJobQueues()
    first = members.observe(body())
    assert first is not None
    parsed = first.jobqueue
    annotated = body(metadata={**body()["metadata"], "annotations": {"jobqueue.dev/paused": "true"}})
    assert members.observe(annotated) is first
    assert first.jobqueue is parsed and first.paused_by is spec.PausedBy.ANNOTATION
    invalid = body(generation=2)
    invalid["spec"]["scaling"]["minReplicas"] = 9
    members.observe(invalid)
    assert first.jobqueue is None and first.error is not None
    assert "spec.scaling.minReplicas" in str(first.error.errors)


def test_new_uid_is_a_fresh_member_and_deletion_forgets() -> None:
    members = served.ServedJobQueues()
    first = members.observe(body())
    assert first is not None
    first.state, first.last_pass = policy.PolicyState(), 1.0
    second = members.observe(body(uid="u2", status={}))
    assert second is not first and second is not None and second.last_pass is None
    deleting = body(uid="u2")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert members.observe(deleting) is None and len(members) == 0


def test_a_watch_event_older_than_our_status_write_does_not_undo_it() -> None:
    """The watch can deliver an event from just before our status patch after the patch's reply:
    its older status must not replace ours (it would make an old problem look new again)."""
    members = served.ServedJobQueues()
    member = members.observe(body(metadata={**body()["metadata"], "resourceVersion": "10"}))
    assert member is not None
    member.wrote({"metadata": {"resourceVersion": "12"}, "status": {"desiredReplicas": 3}})
    members.observe(body(metadata={**body()["metadata"], "resourceVersion": "11"}))
    assert member.status == {"desiredReplicas": 3}
    later = body(metadata={**body()["metadata"], "resourceVersion": "12"}, status={"desiredReplicas": 3})
    members.observe(later)
    assert member.written_version is None  # caught up: the watch is the source again
    members.observe(body(metadata={**body()["metadata"], "resourceVersion": "13"}, status={"x": 1}))
    assert member.status == {"x": 1}


def test_versions_that_are_not_integers_are_not_compared() -> None:
    members = served.ServedJobQueues()
    member = members.observe(body())
    assert member is not None
    member.wrote({"metadata": {"resourceVersion": "abc"}, "status": {"desiredReplicas": 3}})
    members.observe(body(metadata={**body()["metadata"], "resourceVersion": "abb"}))
    assert member.status == body()["status"]


@pytest.mark.parametrize(
    "changes",
    [
        {"spec": []},
        {"spec": {"scaling": [1]}},
        {"spec": {"workers": {"template": {"spec": {"containers": "w"}}}}},
        {"metadata": {"name": "q1", "namespace": "team", "uid": "u1", "annotations": []}},
    ],
    ids=["spec-list", "scaling-list", "containers-string", "annotations-list"],
)
def test_a_malformed_body_is_a_member_with_its_error(changes: dict[str, Any]) -> None:
    member = served.ServedJobQueues().observe(body(**changes))
    assert member is not None and member.jobqueue is None and member.error is not None


def test_the_old_finalizer_is_noted_for_release() -> None:
    members = served.ServedJobQueues()
    meta = {"name": "q1", "namespace": "team", "uid": "u1", "resourceVersion": "7"}
    meta["finalizers"] = ["other.example/keep", served.LEGACY_FINALIZER]
    member = members.observe(body(metadata=meta))
    assert member is not None and member.legacy_finalizer == served.Release("7", ("other.example/keep",))
    leaving = {**meta, "resourceVersion": "8", "deletionTimestamp": "2024-01-01T00:00:00Z"}
    assert members.observe(body(metadata=leaving)) is None and len(members) == 0
    assert members.releases == {("team", "q1"): served.Release("8", ("other.example/keep",))}
    members.gone(("team", "q1"))
    assert members.releases == {}
