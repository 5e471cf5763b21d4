"""The status module (pure): conditions, their reasons, bad news, the status patch and Event bodies.

Case matrix: conditions keep lastTransitionTime unless the status changes; the status patch holds
only changed keys; the paused condition names its source; problems are Degraded=True and
SpecValid=False, and only a new one (or new words) is news; an Event names its object and is
bounded; every reason is one CamelCase word and is documented in docs/operator.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jobqueue_operator import spec, status
from jobqueue_operator.status import ConditionType, Reason

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"


def test_conditions_keep_transition_time_and_status_patch_is_minimal() -> None:
    first = status.merge_conditions([], [status.condition(ConditionType.READY, True, Reason.SCALED)], 1000.0)
    again = status.merge_conditions(
        first, [status.condition(ConditionType.READY, True, Reason.SCALED)], 2000.0
    )
    assert again == first and first[0].last_transition_time == "1970-01-01T00:16:40Z"
    flipped = status.merge_conditions(
        first, [status.condition(ConditionType.READY, False, Reason.PROBE_FAILED)], 2000.0
    )
    assert flipped[0].last_transition_time == "1970-01-01T00:33:20Z"
    assert status.status_patch({"waiting": 1, "replicas": 2}, {"waiting": 1, "replicas": 3}) == {
        "replicas": 3
    }


def test_paused_condition_names_its_source() -> None:
    by_annotation = status.paused_condition(spec.PausedBy.ANNOTATION)
    assert by_annotation.status == "True" and by_annotation.reason == "PausedByAnnotation"
    by_spec = status.paused_condition(spec.PausedBy.SPEC)
    assert by_spec.status == "True" and by_spec.reason == "PausedBySpec"
    assert status.paused_condition(None).status == "False"


def test_only_new_problems_are_news() -> None:
    degraded = status.degraded_condition(status.Problem(Reason.PROBE_FAILED, "Redis down"))
    invalid = status.spec_invalid_conditions(spec.SpecError("spec.scaling", "bad"))
    fine = status.condition(ConditionType.DEGRADED, False, Reason.AS_EXPECTED)
    assert status.problems([fine, status.condition(ConditionType.SPEC_VALID, True, Reason.VALID)]) == {}
    assert status.problems([degraded, *invalid]) == {
        ConditionType.DEGRADED: ("ProbeFailed", "Redis down"),
        ConditionType.SPEC_VALID: ("InvalidSpec", "spec.scaling: bad"),
    }
    assert status.new_problems([fine], [degraded]) == [("ProbeFailed", "Redis down")]
    assert status.new_problems([degraded], [degraded]) == []
    reworded = status.degraded_condition(status.Problem(Reason.PROBE_FAILED, "Redis still down"))
    assert status.new_problems([degraded], [reworded]) == [("ProbeFailed", "Redis still down")]


def test_event_body() -> None:
    reference = {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "namespace": "shop",
        "name": "q",
        "uid": "u",
    }
    body = status.event(reference, status.EventType.WARNING, Reason.PROBE_FAILED, "x" * 2000, 1000.0)
    assert body["involvedObject"] == reference and body["metadata"]["namespace"] == "shop"
    assert body["type"] == "Warning" and body["reason"] == "ProbeFailed" and len(body["message"]) == 1024
    assert body["metadata"]["generateName"] == "jobqueue-operator-" and "name" not in body["metadata"]
    assert body["firstTimestamp"] == body["lastTimestamp"] == "1970-01-01T00:16:40Z"


@pytest.mark.parametrize("reason", [*Reason, *status.EventReason], ids=str)
def test_reasons_are_camel_case_and_documented(reason: str) -> None:
    assert re.fullmatch(r"[A-Z][A-Za-z]+", reason)
    assert f"`{reason}`" in DOCS.read_text(), f"docs/operator.md does not list the reason {reason}"
