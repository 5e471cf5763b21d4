"""parse_jobqueue and the status helpers.

| case                                   | expectation                                        |
| -------------------------------------- | -------------------------------------------------- |
| every JobQueue in examples/            | parses, defaults filled in                         |
| each bad spec in BAD_SPECS             | SpecError naming the Kubernetes field path + why   |
| pause by spec or annotation            | is_paused is True; otherwise False                 |
| worker_env                             | names are real WorkerSettings variables            |
| set_condition / parse_status           | transition time kept while status unchanged        |
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobqueue_operator import spec, status

from worker_runtime import settings

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


@pytest.mark.parametrize(
    ("annotations", "paused", "expected"),
    [
        ({}, None, False),
        ({}, True, True),
        ({"jobqueue.dev/paused": "true"}, None, True),
        ({"jobqueue.dev/paused": "True"}, False, True),
        ({"jobqueue.dev/paused": "false"}, None, False),
        ({"jobqueue.dev/paused": "yes"}, None, False),
    ],
)
def test_is_paused(annotations: dict[str, str], paused: bool | None, expected: bool) -> None:
    body = minimal()
    body["metadata"]["annotations"] = annotations
    if paused is not None:
        body["spec"]["scaling"]["paused"] = paused
    assert spec.is_paused(body) is expected


def test_is_paused_reads_an_invalid_spec() -> None:
    body = {"metadata": {"annotations": {"jobqueue.dev/paused": "true"}}, "spec": {"scaling": "nonsense"}}
    assert spec.is_paused(body) is True


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
