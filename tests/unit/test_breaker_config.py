"""Circuit breaker configuration: ``flow.Breaker`` (both triggers, the bounds naming the value),
its ``flow`` hash fields and back, ``spec.flow.circuitBreaker`` (pydantic and the CRD), what the
operator writes from it, and the CLI's ``--breaker`` syntax."""

from __future__ import annotations

import argparse
import copy
from typing import Any

import jsonschema
import pytest
from jobqueue_operator import crdgen, flow_spec, flow_sync, spec

from tests.unit.test_spec import minimal
from worker_runtime import admin_commands, cli, flow
from worker_runtime.flow import Breaker, FlowConfig, FlowField


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"failures": None, "cooloff_seconds": 30}, "neither"),
        ({"failures": 0, "cooloff_seconds": 30}, "failures"),
        ({"failures": 5, "cooloff_seconds": 0}, "cooloff_seconds"),
        ({"failures": None, "cooloff_seconds": 30, "failure_ratio": 0.0}, "failure_ratio"),
        ({"failures": None, "cooloff_seconds": 30, "failure_ratio": 1.5}, "failure_ratio"),
        ({"failures": None, "cooloff_seconds": 30, "failure_ratio": float("nan")}, "failure_ratio"),
        ({"failures": None, "cooloff_seconds": 30, "failure_ratio": True}, "failure_ratio"),
        (
            {"failures": None, "cooloff_seconds": 30, "failure_ratio": 0.5, "window_seconds": 0.5},
            "window_seconds",
        ),
        (
            {"failures": None, "cooloff_seconds": 30, "failure_ratio": 0.5, "window_seconds": 1e6},
            "window_seconds",
        ),
        ({"failures": None, "cooloff_seconds": 30, "failure_ratio": 0.5, "min_attempts": 0}, "min_attempts"),
        (
            {"failures": None, "cooloff_seconds": 30, "failure_ratio": 0.5, "min_attempts": 2.5},
            "min_attempts",
        ),
    ],
)
def test_a_bad_breaker_is_refused_naming_the_value(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Breaker(**arguments)


@pytest.mark.parametrize(
    "breaker",
    [
        Breaker(5, 30.0),
        Breaker(None, 2.5, 0.5, 5.0, 10),
        Breaker(3, 1.0, 1.0, 86_400.0, 1),
        Breaker(7, 30.0, 0.123456789, 60.0, 100),  # the ratio kept exactly
    ],
)
def test_a_breaker_reads_back_from_its_hash_fields(breaker: Breaker) -> None:
    fields = FlowConfig(breaker=breaker).fields()
    assert set(flow.BREAKER_FIELDS) <= set(fields)
    written = {name: value for name, value in fields.items() if value}
    assert FlowConfig.from_hash(written) == FlowConfig(breaker=breaker)


def test_the_hash_fields_of_each_trigger() -> None:
    ratio_only = FlowConfig(breaker=Breaker(None, 30.0, 0.5, 5.0, 10)).fields()
    # "0": breakers configured, none opened by a run (the claim parks by breaker_failures' presence).
    assert (ratio_only[FlowField.BREAKER_FAILURES], ratio_only[FlowField.BREAKER_RATIO]) == ("0", "0.5")
    assert (ratio_only[FlowField.BREAKER_WINDOW_MS], ratio_only[FlowField.BREAKER_MIN_ATTEMPTS]) == (
        "5000",
        "10",
    )
    by_run = FlowConfig(breaker=Breaker(5, 30.0)).fields()
    assert by_run[FlowField.BREAKER_FAILURES] == "5"
    assert [by_run[f] for f in (FlowField.BREAKER_RATIO, FlowField.BREAKER_WINDOW_MS)] == ["", ""]
    assert all(FlowConfig().fields()[name] == "" for name in flow.BREAKER_FIELDS)


@pytest.mark.parametrize(
    "raw",
    [
        {FlowField.BREAKER_FAILURES: "0", FlowField.BREAKER_COOLOFF_MS: "1000"},  # no trigger left
        {FlowField.BREAKER_FAILURES: "x", FlowField.BREAKER_COOLOFF_MS: "1000"},
        {FlowField.BREAKER_FAILURES: "0", FlowField.BREAKER_COOLOFF_MS: "1000", FlowField.BREAKER_RATIO: "2",
         FlowField.BREAKER_WINDOW_MS: "5000", FlowField.BREAKER_MIN_ATTEMPTS: "10"},
    ],
)  # fmt: skip
def test_a_hash_that_configures_no_working_breaker_reads_as_none(raw: dict[str, str]) -> None:
    assert FlowConfig.from_hash(raw).breaker is None


def _with_breaker(breaker: Any) -> dict[str, Any]:
    body = minimal()
    body["spec"]["flow"] = {"circuitBreaker": breaker}
    return body


@pytest.mark.parametrize(
    ("breaker", "path", "reason"),
    [
        ({"cooloffSeconds": 30}, "spec.flow.circuitBreaker", "needs failures (in a row) or failureRatio"),
        ({"failureRatio": 0}, "spec.flow.circuitBreaker.failureRatio", "greater than 0"),
        ({"failureRatio": 1.2}, "spec.flow.circuitBreaker.failureRatio", "less than or equal to 1"),
        ({"failureRatio": "half"}, "spec.flow.circuitBreaker.failureRatio", "number"),
        ({"failureRatio": 0.5, "windowSeconds": 0}, "spec.flow.circuitBreaker.windowSeconds", "greater than"),
        (
            {"failureRatio": 0.5, "windowSeconds": 90_000},
            "spec.flow.circuitBreaker.windowSeconds",
            "less than",
        ),
        ({"failureRatio": 0.5, "minAttempts": 0}, "spec.flow.circuitBreaker.minAttempts", "greater than"),
        ({"failures": 0, "failureRatio": 0.5}, "spec.flow.circuitBreaker.failures", "greater than"),
    ],
)
def test_a_bad_circuit_breaker_spec_is_refused_naming_the_field(
    breaker: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_jobqueue(_with_breaker(breaker))
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_a_ratio_breaker_spec_is_written_to_redis_field_by_field() -> None:
    jq = spec.parse_jobqueue(_with_breaker({"failureRatio": 0.5, "windowSeconds": 5, "cooloffSeconds": 2}))
    wanted = jq.spec.flow
    assert wanted.circuit_breaker is not None
    assert wanted.circuit_breaker.breaker() == Breaker(None, 2.0, 0.5, 5.0, 10)  # minAttempts defaults
    assert flow_sync.changes(wanted, FlowConfig()) == {
        FlowField.BREAKER_FAILURES: "0",
        FlowField.BREAKER_COOLOFF_MS: "2000",
        FlowField.BREAKER_RATIO: "0.5",
        FlowField.BREAKER_WINDOW_MS: "5000",
        FlowField.BREAKER_MIN_ATTEMPTS: "10",
    }
    assert flow_sync.changes(wanted, FlowConfig(breaker=Breaker(None, 2.0, 0.5, 5.0, 10))) == {}
    # The ratio taken out of the spec: its fields are deleted, the run of failures written.
    by_run = flow_spec.FlowSpec.model_validate({"circuitBreaker": {"failures": 4, "cooloffSeconds": 2}})
    assert flow_sync.changes(by_run, FlowConfig(breaker=Breaker(None, 2.0, 0.5, 5.0, 10))) == {
        FlowField.BREAKER_FAILURES: "4",
        FlowField.BREAKER_RATIO: "",
        FlowField.BREAKER_WINDOW_MS: "",
        FlowField.BREAKER_MIN_ATTEMPTS: "",
    }


def test_the_crd_refuses_what_it_can_of_a_circuit_breaker() -> None:
    node = crdgen.open_api_schema()["properties"]["spec"]["properties"]["flow"]["properties"][
        "circuitBreaker"
    ]
    assert node["x-kubernetes-validations"] == [
        {"rule": "has(self.failures) || has(self.failureRatio)",
         "message": "needs failures (in a row) or failureRatio, or both"}
    ]  # fmt: skip
    assert "required" not in node
    ratio = node["properties"]["failureRatio"]
    # OpenAPI 3.0's exclusive bound (a flag, as in JSON Schema draft 4), which the API server reads.
    assert (ratio["minimum"], ratio["exclusiveMinimum"], ratio["maximum"]) == (0, True, 1)
    checker = jsonschema.Draft4Validator(node)
    assert checker.is_valid({"failureRatio": 0.5}) and checker.is_valid({"failureRatio": 1})
    assert not checker.is_valid({"failureRatio": 0}) and not checker.is_valid({"failureRatio": 1.01})
    assert not checker.is_valid({"failureRatio": 0.5, "windowSeconds": 0.5})


def test_the_failures_only_spec_keeps_working() -> None:
    body = _with_breaker({"failures": 5})
    jq = spec.parse_jobqueue(copy.deepcopy(body))
    assert jq.spec.flow.circuit_breaker is not None
    assert jq.spec.flow.circuit_breaker.breaker() == Breaker(5, 30.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/30", Breaker(5, 30.0)),
        ("5", Breaker(5, 30.0)),
        ("ratio=0.5,window=60,min=10,cooloff=30", Breaker(None, 30.0, 0.5, 60.0, 10)),
        ("ratio=0.6", Breaker(None, 30.0, 0.6)),
        ("5/10,ratio=0.5,window=5", Breaker(5, 10.0, 0.5, 5.0)),
        ("failures=3,cooloff=2", Breaker(3, 2.0)),
        ("off", "off"),
    ],
)
def test_the_cli_breaker_syntax(text: str, expected: Breaker | str) -> None:
    assert cli._breaker(text) == expected


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("0/30", "failures"),
        ("ratio=1.5", "failure_ratio"),
        ("ratio=0.5,window=0", "window_seconds"),
        ("ratio=0.5,min=0", "min_attempts"),
        ("cooloff=30", "neither"),
        ("ratio=0.5,speed=3", "unknown part 'speed=3'"),
        ("ratio=half", "could not convert"),
    ],
)
def test_a_bad_cli_breaker_says_what_is_wrong(text: str, named: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=named):
        cli._breaker(text)


def test_the_breaker_is_described_in_one_line() -> None:
    both = admin_commands.describe_breaker(Breaker(5, 30.0, 0.5, 60.0, 10))
    ratio = "a failure ratio of 0.5 among >= 10 attempts in 60s"
    assert both == f"breakers at 5 failures in a row or {ratio}, cool-off 30s"
    by_run = admin_commands.describe_breaker(Breaker(5, 30.0))
    assert by_run == "breakers at 5 failures in a row, cool-off 30s"
