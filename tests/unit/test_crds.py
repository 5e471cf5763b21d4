"""The generated CRD: no drift from the models, structural, and it accepts the examples.

| case                                        | expectation                                          |
| ------------------------------------------- | ---------------------------------------------------- |
| regenerate in memory                        | equals crds/ and the chart's templates/crd.yaml      |
| a file edited by hand                       | ``--check`` exits 1 with a diff                      |
| schema walk                                 | structural: no $ref/anyOf/title/const, typed nodes   |
| examples/*.yaml JobQueues                   | valid for the openAPIV3Schema and parse_jobqueue     |
| negative minReplicas                        | refused by the schema at spec.scaling.minReplicas    |
| minReplicas > maxReplicas                   | passes the schema (CEL's job), refused by the parser |
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobqueue_operator import crdgen, spec
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]


def checked_in_crd() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / crdgen.CRD_PATH).read_text())
    return data


def open_api_schema() -> dict[str, Any]:
    schema: dict[str, Any] = checked_in_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def example_jobqueues() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "JobQueue"]
    return docs


def test_checked_in_files_match_the_models() -> None:
    generated = crdgen.outputs(ROOT)
    assert set(generated) == {ROOT / crdgen.CRD_PATH, ROOT / crdgen.CHART_CRD_PATH}
    for path, text in generated.items():
        assert path.read_text() == text, f"{path} drifted: run `python -m jobqueue_operator.crdgen`"
    assert crdgen.check(ROOT) == []


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--root", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 0
    crd_file = tmp_path / crdgen.CRD_PATH
    crd_file.write_text(crd_file.read_text().replace("default: 120", "default: 60"))
    capsys.readouterr()
    assert crdgen.main(["--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-                    default: 60" in out and "+                    default: 120" in out


def test_generation_is_deterministic() -> None:
    assert crdgen.render_crd() == crdgen.render_crd()
    assert crdgen.render_chart_crd() == crdgen.render_chart_crd()


def test_crd_identity_and_columns() -> None:
    crd = checked_in_crd()
    assert crd["metadata"]["name"] == "jobqueues.jobqueue.dev"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "JobQueue",
        "jobqueues",
        "jobqueue",
        ["jq"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Waiting"] == ".status.waiting"
    assert columns["Oldest Age"] == ".status.oldestAgeSeconds"
    assert columns["Replicas"] == ".status.replicas"
    assert columns["Ready"] == ".status.readyReplicas"  # the Deployment's, beside what was asked for
    assert columns["Desired"] == ".status.desiredReplicas"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_cel_rules_and_defaults() -> None:
    props = open_api_schema()["properties"]["spec"]["properties"]
    scaling = props["scaling"]
    rules = [v["rule"] for v in scaling["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert "has(self.template) != has(self.deploymentRef)" in [
        v["rule"] for v in props["workers"]["x-kubernetes-validations"]
    ]
    assert scaling["properties"]["minReplicas"]["default"] == 0
    assert scaling["properties"]["scaleDown"]["default"] == {}
    assert scaling["properties"]["targets"]["minProperties"] == 1
    assert props["workers"]["properties"]["template"]["x-kubernetes-preserve-unknown-fields"] is True
    status_props = open_api_schema()["properties"]["status"]["properties"]
    assert status_props["policy"]["x-kubernetes-preserve-unknown-fields"] is True


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural() -> None:
    for path, node in _nodes(open_api_schema()):
        forbidden = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "title", "const"} & set(node)
        assert not forbidden, f"{path} has {forbidden}"
        assert not isinstance(node.get("additionalProperties"), bool), path
        assert "type" in node, f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object", path
        assert node.get("default", 0) is not None, f"{path} defaults to null"


@pytest.mark.parametrize("sample", example_jobqueues(), ids=lambda s: s["metadata"]["name"])
def test_examples_validate(sample: dict[str, Any]) -> None:
    errors = list(Draft7Validator(open_api_schema()).iter_errors(sample))
    assert errors == [], [e.message for e in errors]
    assert spec.parse_jobqueue(sample).metadata.name == sample["metadata"]["name"]


def test_negative_min_replicas_is_refused_by_the_schema() -> None:
    sample = copy.deepcopy(example_jobqueues()[0])
    sample["spec"]["scaling"]["minReplicas"] = -1
    errors = list(Draft7Validator(open_api_schema()).iter_errors(sample))
    assert [(list(e.absolute_path), e.validator) for e in errors] == [
        (["spec", "scaling", "minReplicas"], "minimum")
    ]
    with pytest.raises(spec.SpecError, match=r"^spec\.scaling\.minReplicas: "):
        spec.parse_jobqueue(sample)


def test_min_above_max_passes_the_schema_but_not_the_parser() -> None:
    sample = copy.deepcopy(example_jobqueues()[0])
    sample["spec"]["scaling"].update(minReplicas=30, maxReplicas=20)
    sample["spec"]["scaling"].pop("fallback", None)
    assert list(Draft7Validator(open_api_schema()).iter_errors(sample)) == []
    with pytest.raises(spec.SpecError) as caught:
        spec.parse_jobqueue(sample)
    assert caught.value.path == "spec.scaling.minReplicas"
    assert "must not exceed maxReplicas" in caught.value.reason


def test_schema_refuses_an_inline_url_and_a_missing_secret_ref() -> None:
    sample = copy.deepcopy(example_jobqueues()[0])
    del sample["spec"]["queue"]["redis"]["urlSecretRef"]
    errors = list(Draft7Validator(open_api_schema()).iter_errors(sample))
    assert [(list(e.absolute_path), e.validator) for e in errors] == [
        (["spec", "queue", "redis"], "required")
    ]


def test_chart_template_wraps_the_same_crd() -> None:
    text = (ROOT / crdgen.CHART_CRD_PATH).read_text()
    lines = text.splitlines()
    assert lines[0] == "{{- if .Values.crds.install }}"
    assert lines[-1] == "{{- end }}"
    assert "  {{- if .Values.crds.keep }}" in lines
    assert "    helm.sh/resource-policy: keep" in lines
    assert '    {{- include "jobqueue-operator.labels" . | nindent 4 }}' in lines
    # Drop the template actions: what is left is the plain CRD's spec.
    plain = "\n".join(line for line in lines if "{{" not in line and "helm.sh" not in line)
    rendered = yaml.safe_load(plain)
    assert rendered["spec"] == checked_in_crd()["spec"]
    assert rendered["metadata"]["name"] == checked_in_crd()["metadata"]["name"]
