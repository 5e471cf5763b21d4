"""parse_jobqueue and the status helpers.

| case                                   | expectation                                        |
| -------------------------------------- | -------------------------------------------------- |
| every JobQueue in examples/            | parses, defaults filled in                         |
| each bad spec in BAD_SPECS             | SpecError naming the Kubernetes field path + why   |
|   (strict types, upper bounds, the     |                                                    |
|   queue name from metadata.name, pod   |                                                    |
|   templates the operator cannot use)   |                                                    |
| malformed bodies of any shape          | paused_by and the served set never raise           |
| the CRD                                | the same bounds, and a CEL rule on metadata.name   |
| pause by spec or annotation            | paused_by names it, raw or parsed; otherwise None  |
| worker_env                             | names are real WorkerSettings variables            |
| defaults handed to the workers         | the runtime's own, in the CRD and on the pod       |
| set_condition / parse_status           | transition time kept while status unchanged        |
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jobqueue_operator import crdgen, spec, status

from worker_runtime import keys, settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_jobqueues() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "JobQueue"]
    return docs


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": "jobqueue.dev/v1alpha1",
        "kind": "JobQueue",
        "metadata": {"name": "emails", "namespace": "default"},
        "spec": {
            "queue": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}},
            "workers": {"deploymentRef": {"name": "emails-workers"}},
            "scaling": {"targets": {"backlogPerReplica": 50}},
        },
    }


def test_examples_exist_and_parse() -> None:
    samples = example_jobqueues()
    assert {s["metadata"]["name"] for s in samples} >= {"emails", "thumbnails"}
    for sample in samples:
        jobqueue = spec.parse_jobqueue(sample)
        assert jobqueue.metadata.name == sample["metadata"]["name"]


def test_defaults_of_a_minimal_spec() -> None:
    jq = spec.parse_jobqueue(minimal())
    scaling = jq.spec.scaling
    assert (scaling.min_replicas, scaling.max_replicas, scaling.polling_interval) == (0, 10, 2)
    assert scaling.activation.waiting == 1
    assert scaling.scale_up.period_seconds == 15
    assert scaling.scale_down.stabilization_window_seconds == 60
    assert scaling.cooldown_seconds == 120
    assert scaling.fallback.failure_threshold == 3 and scaling.fallback.replicas is None
    assert jq.spec.workers.concurrency == 10 and jq.spec.workers.metrics_port == 9100
    assert (jq.spec.jobs.attempts, jq.spec.jobs.timeout_seconds) == (3, 300)
    assert jq.spec.queue.redis.tls.enabled is False
    assert jq.queue_name == "emails"
    assert jq.termination_grace_period_seconds == 300 + spec.GRACE_MARGIN_SECONDS
    flow = jq.spec.flow
    assert (flow.claims_paused, flow.rate_limit, flow.max_running, flow.while_paused) == (
        None,
        None,
        None,
        "Keep",
    )
    assert flow.written() == {}  # nothing set: the operator leaves the queue's flow control alone


def test_explicit_queue_name_and_grace_period() -> None:
    body = minimal()
    body["spec"]["queue"]["name"] = "mail-out"
    body["spec"]["workers"]["terminationGracePeriodSeconds"] = 45
    jq = spec.parse_jobqueue(body)
    assert jq.queue_name == "mail-out"
    assert jq.termination_grace_period_seconds == 45


def test_worker_env_uses_the_runtime_setting_names() -> None:
    emails = next(d for d in example_jobqueues() if d["metadata"]["name"] == "emails")
    env = spec.parse_jobqueue(emails).worker_env()
    prefix = "JOBQUEUE_"
    fields = {f"{prefix}{name}".upper() for name in settings.WorkerSettings.model_fields}
    assert set(env) <= fields
    assert env["JOBQUEUE_QUEUE"] == "emails"
    assert env["JOBQUEUE_CONCURRENCY"] == "20"
    assert env["JOBQUEUE_DEFAULT_ATTEMPTS"] == "5"
    assert env["JOBQUEUE_DEFAULT_TIMEOUT_SECONDS"] == "60"
    assert "JOBQUEUE_REDIS_URL" not in env  # comes from the Secret, never a literal


# Spec fields handed to the workers, whose defaults are the runtime's: (path under spec, field).
RUNTIME_DEFAULTS = [
    (("workers", "concurrency"), "concurrency"),
    (("workers", "metricsPort"), "metrics_port"),
    (("jobs", "attempts"), "default_attempts"),
    (("jobs", "backoff", "baseSeconds"), "backoff_base_seconds"),
    (("jobs", "backoff", "capSeconds"), "backoff_cap_seconds"),
    (("jobs", "timeoutSeconds"), "default_timeout_seconds"),
    (("jobs", "retention", "completed", "count"), "keep_completed"),
    (("jobs", "retention", "completed", "ageSeconds"), "keep_completed_seconds"),
    (("jobs", "retention", "dead", "count"), "keep_dead"),
    (("jobs", "retention", "dead", "ageSeconds"), "keep_dead_seconds"),
]


@pytest.mark.parametrize(("path", "field"), RUNTIME_DEFAULTS, ids=[f for _, f in RUNTIME_DEFAULTS])
def test_crd_defaults_are_the_runtimes(path: tuple[str, ...], field: str) -> None:
    node = crdgen.open_api_schema()["properties"]["spec"]
    for part in path:
        node = node["properties"][part]
    assert node["default"] == settings.WorkerSettings.model_fields[field].default


def test_a_jobqueue_that_sets_nothing_runs_pods_with_the_runtime_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("JOBQUEUE_")]:
        monkeypatch.delenv(name)
    for name, value in spec.parse_jobqueue(minimal()).worker_env().items():
        monkeypatch.setenv(name, value)
    on_the_pod = settings.WorkerSettings()
    for _, field in RUNTIME_DEFAULTS:
        assert getattr(on_the_pod, field) == settings.WorkerSettings.model_fields[field].default, field


def test_env_name_refuses_unknown_fields() -> None:
    assert spec.env_name("backoff_cap_seconds") == "JOBQUEUE_BACKOFF_CAP_SECONDS"
    with pytest.raises(KeyError):
        spec.env_name("no_such_setting")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        del node[leaf]

    return mutate


def _both(mutations: list[Callable[[dict[str, Any]], None]]) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        for one in mutations:
            one(body)

    return mutate


BAD_SPECS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "negative min",
        _set("spec.scaling.minReplicas", -1),
        "spec.scaling.minReplicas",
        "greater than or equal",
    ),
    (
        "min above max",
        _both([_set("spec.scaling.minReplicas", 5), _set("spec.scaling.maxReplicas", 2)]),
        "spec.scaling.minReplicas",
        "must not exceed maxReplicas",
    ),
    ("zero max", _set("spec.scaling.maxReplicas", 0), "spec.scaling.maxReplicas", "greater than or equal"),
    (
        "template and deploymentRef",
        _set("spec.workers.template", {"spec": {"containers": []}}),
        "spec.workers",
        "exactly one",
    ),
    ("no workers source", _delete("spec.workers.deploymentRef"), "spec.workers", "exactly one"),
    ("no target", _set("spec.scaling.targets", {}), "spec.scaling.targets", "at least one"),
    ("missing targets", _delete("spec.scaling.targets"), "spec.scaling.targets", "Field required"),
    (
        "fallback above max",
        _set("spec.scaling.fallback", {"replicas": 11}),
        "spec.scaling.fallback.replicas",
        "within [minReplicas, maxReplicas]",
    ),
    ("colon in queue name", _set("spec.queue.name", "a:b"), "spec.queue.name", "pattern"),
    ("long queue name", _set("spec.queue.name", "q" * 201), "spec.queue.name", "at most 200"),
    (
        "no url secret",
        _delete("spec.queue.redis.urlSecretRef"),
        "spec.queue.redis.urlSecretRef",
        "Field required",
    ),
    ("inline redis url", _set("spec.queue.redis.url", "redis://x"), "spec.queue.redis.url", "Extra inputs"),
    ("zero concurrency", _set("spec.workers.concurrency", 0), "spec.workers.concurrency", "greater than"),
    ("too many attempts", _set("spec.jobs.attempts", 1001), "spec.jobs.attempts", "less than or equal"),
    (
        "zero backlog target",
        _set("spec.scaling.targets.backlogPerReplica", 0),
        "spec.scaling.targets.backlogPerReplica",
        "greater than or equal",
    ),
    ("typo in a field", _set("spec.scaling.maxReplica", 3), "spec.scaling.maxReplica", "Extra inputs"),
    ("wrong kind", _set("kind", "Deployment"), "kind", "JobQueue"),
    # Strict: what the API server's schema refuses is refused without one too (dev mode).
    ("string for an integer", _set("spec.scaling.maxReplicas", "5"), "spec.scaling.maxReplicas", "integer"),
    ("boolean for an integer", _set("spec.scaling.maxReplicas", True), "spec.scaling.maxReplicas", "integer"),
    ("yes for paused", _set("spec.scaling.paused", "yes"), "spec.scaling.paused", "valid boolean"),
    ("1 for paused", _set("spec.scaling.paused", 1), "spec.scaling.paused", "valid boolean"),
    ("scaling as a list", _set("spec.scaling", [{"maxReplicas": 3}]), "spec.scaling", "dictionary"),
    # Upper bounds.
    ("absurd maxReplicas", _set("spec.scaling.maxReplicas", 10_001), "spec.scaling.maxReplicas", "less than"),
    (
        "absurd pollingInterval",
        _set("spec.scaling.pollingInterval", 601),
        "spec.scaling.pollingInterval",
        "less than or equal to 600",
    ),
    (
        "absurd job timeout",
        _set("spec.jobs.timeoutSeconds", 86_401),
        "spec.jobs.timeoutSeconds",
        "less than or equal to 86400",
    ),
    # metadata.name is the queue name when spec.queue.name is absent: the runtime's rule applies.
    ("long name as queue name", _set("metadata.name", "q" * 201), "spec.queue.name", "metadata.name is"),
    # Pod templates the operator could not build on.
    (
        "no containers",
        _both([_delete("spec.workers.deploymentRef"), _set("spec.workers.template", {"spec": {}})]),
        "spec.workers.template.spec.containers",
        "at least one container",
    ),
    (
        "containers as a string",
        _both([_delete("spec.workers.deploymentRef"), _set("spec.workers.template.spec.containers", "w")]),
        "spec.workers.template.spec.containers",
        "must be a list of objects, not a string",
    ),
    (
        "env as a string",
        _both(
            [
                _delete("spec.workers.deploymentRef"),
                _set("spec.workers.template.spec.containers", [{"name": "w", "image": "w", "env": "A=1"}]),
            ]
        ),
        "spec.workers.template.spec.containers[0].env",
        "must be a list of objects",
    ),
    (
        "a container without a name",
        _both(
            [
                _delete("spec.workers.deploymentRef"),
                _set("spec.workers.template.spec.containers", [{"image": "w"}]),
            ]
        ),
        "spec.workers.template.spec.containers[0].name",
        "is required",
    ),
    (
        "template as a list",
        _both([_delete("spec.workers.deploymentRef"), _set("spec.workers.template", ["w"])]),
        "spec.workers.template",
        "dictionary",
    ),
    (
        "rate limit of no jobs",
        _set("spec.flow.rateLimit", {"jobs": 0}),
        "spec.flow.rateLimit.jobs",
        "greater",
    ),
    (
        "rate limit window of no time",
        _set("spec.flow.rateLimit", {"jobs": 5, "seconds": 0}),
        "spec.flow.rateLimit.seconds",
        "greater",
    ),
    (
        "group rate limit of no jobs",
        _set("spec.flow.groupRateLimit", {"jobs": 0}),
        "spec.flow.groupRateLimit.jobs",
        "greater",
    ),
    (
        "group rate limit window past a day",
        _set("spec.flow.groupRateLimit", {"jobs": 5, "seconds": 90_000}),
        "spec.flow.groupRateLimit.seconds",
        "less",
    ),
    (
        "group rate limit without jobs",
        _set("spec.flow.groupRateLimit", {"seconds": 1}),
        "spec.flow.groupRateLimit.jobs",
        "required",
    ),
    ("negative running cap", _set("spec.flow.maxRunning", -1), "spec.flow.maxRunning", "greater"),
    ("claimsPaused as a string", _set("spec.flow.claimsPaused", "true"), "spec.flow.claimsPaused", "boolean"),
    (
        "unknown whilePaused",
        _set("spec.flow.whilePaused", "Shrink"),
        "spec.flow.whilePaused",
        "'Keep' or 'Zero'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "reason"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_specs_are_refused_with_path_and_reason(
    mutate: Callable[[dict[str, Any]], None], path: str, reason: str
) -> None:
    body = minimal()
    mutate(body)
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_jobqueue(body)
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_several_problems_are_all_reported() -> None:
    body = minimal()
    _both([_set("spec.scaling.minReplicas", 5), _set("spec.scaling.maxReplicas", 2)])(body)
    _set("spec.scaling.targets", {})(body)
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_jobqueue(body)
    assert [p for p, _ in caught.value.errors] == ["spec.scaling.minReplicas", "spec.scaling.targets"]


def test_status_in_the_body_is_ignored() -> None:
    body = minimal()
    body["status"] = {"waiting": "garbage"}
    assert spec.parse_jobqueue(body).metadata.name == "emails"


ANNOTATION, SPEC = spec.PausedBy.ANNOTATION, spec.PausedBy.SPEC


@pytest.mark.parametrize(
    ("annotations", "paused", "expected"),
    [
        ({}, None, None),
        ({}, False, None),
        ({}, True, SPEC),
        ({"jobqueue.dev/paused": "true"}, None, ANNOTATION),
        ({"jobqueue.dev/paused": "True"}, False, ANNOTATION),
        ({"jobqueue.dev/paused": " TRUE\n"}, None, ANNOTATION),
        ({"jobqueue.dev/paused": "true"}, True, ANNOTATION),
        ({"jobqueue.dev/paused": "false"}, True, SPEC),
        ({"jobqueue.dev/paused": "false"}, None, None),
        ({"jobqueue.dev/paused": "yes"}, None, None),
    ],
)
def test_paused_by(annotations: dict[str, str], paused: bool | None, expected: spec.PausedBy | None) -> None:
    body = minimal()
    body["metadata"]["annotations"] = annotations
    if paused is not None:
        body["spec"]["scaling"]["paused"] = paused
    assert spec.paused_by(body) is expected
    assert spec.paused_by(spec.parse_jobqueue(body)) is expected


@pytest.mark.parametrize("scaling", ["nonsense", None, {"paused": "true"}])
def test_paused_by_reads_an_invalid_spec(scaling: Any) -> None:
    annotated = {"metadata": {"annotations": {"jobqueue.dev/paused": "true"}}, "spec": {"scaling": scaling}}
    assert spec.paused_by(annotated) is ANNOTATION
    assert spec.paused_by({"spec": {"scaling": scaling}}) is None


def test_parse_leaves_the_body_untouched() -> None:
    body = minimal()
    before = copy.deepcopy(body)
    spec.parse_jobqueue(body)
    assert body == before


def test_set_condition_keeps_transition_time_while_unchanged() -> None:
    ready = status.Condition(type=status.ConditionType.READY, status=status.ConditionStatus.TRUE)
    first = status.set_condition([], ready, "2024-01-01T00:00:00Z")
    again = status.set_condition(first, ready.model_copy(update={"message": "still"}), "2024-01-01T00:05:00Z")
    assert again[0].last_transition_time == "2024-01-01T00:00:00Z"
    assert again[0].message == "still"
    flipped = ready.model_copy(update={"status": status.ConditionStatus.FALSE})
    changed = status.set_condition(again, flipped, "2024-01-01T00:09:00Z")
    assert len(changed) == 1 and changed[0].last_transition_time == "2024-01-01T00:09:00Z"


def test_parse_status_reads_garbage_as_empty() -> None:
    assert status.parse_status({"status": {"waiting": "many"}}) == status.JobQueueStatus()
    read = status.parse_status(
        {"status": {"waiting": 3, "conditions": [{"type": "Paused", "status": "True"}]}}
    )
    assert read.waiting == 3
    assert read.condition(status.ConditionType.PAUSED) is not None
    assert read.condition(status.ConditionType.READY) is None


MALFORMED: list[Any] = [
    {"spec": []},
    {"spec": {"scaling": []}},
    {"spec": {"scaling": {"paused": "yes"}}},
    {"metadata": {"annotations": []}, "spec": "x"},
    {
        "metadata": {"name": "q", "namespace": "ns"},
        "spec": {"workers": {"template": {"spec": {"containers": "w"}}}},
    },
    {"metadata": {"name": "q"}, "spec": {"queue": None, "workers": 3, "scaling": [1, 2]}},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_bodies_are_reported_never_raised(body: Any) -> None:
    assert spec.paused_by(body) is None
    with pytest.raises(spec.SpecError):
        spec.parse_jobqueue(body)


def test_the_crd_has_the_bounds_and_the_queue_name_rule() -> None:
    schema = crdgen.open_api_schema()
    scaling = schema["properties"]["spec"]["properties"]["scaling"]["properties"]
    assert scaling["maxReplicas"]["maximum"] == 10_000
    assert scaling["pollingInterval"]["maximum"] == 600
    jobs = schema["properties"]["spec"]["properties"]["jobs"]["properties"]
    assert jobs["timeoutSeconds"]["maximum"] == 86_400
    (rule,) = schema["x-kubernetes-validations"]
    assert rule["rule"] == "has(self.spec.queue.name) || size(self.metadata.name) <= 200"


QUEUE_NAMES = [
    "a",
    "emails",
    "team.a/emails-v2_x",
    "q" * 200,
    "q" * 201,
    "q" * 253,
    "",
    "a:b",
    "a{b",
    "a}b",
    "a b",
    "a\tb",
    "a\nb",
    "a\rb",
    "ümlaut-é",
]


@pytest.mark.parametrize("name", QUEUE_NAMES, ids=[repr(n)[:24] for n in QUEUE_NAMES])
def test_the_crd_queue_name_rule_is_the_runtimes(name: str) -> None:
    """What the API server accepts as spec.queue.name, the operator parses and the runtime uses."""
    schema = crdgen.open_api_schema()["properties"]["spec"]["properties"]["queue"]["properties"]["name"]
    by_schema = jsonschema.Draft7Validator(schema).is_valid(name)
    try:
        keys.validate_queue_name(name)
        by_runtime = True
    except ValueError:
        by_runtime = False
    body = minimal()
    body["spec"]["queue"]["name"] = name
    try:
        spec.parse_jobqueue(body)
        by_operator = True
    except spec.SpecError:
        by_operator = False
    assert by_schema == by_runtime == by_operator, (by_schema, by_runtime, by_operator)
