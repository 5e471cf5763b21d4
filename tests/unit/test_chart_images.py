"""The operator image: what the chart pulls is what `make images` pushes.

No jobqueue image is published, so an install needs the user's own registry: `make images
REGISTRY=...` builds and pushes the operator and worker-runtime images (Docker is not available
everywhere, so the target is checked with `make -n`, which prints the commands without running
them), and `image.registry` points the chart at them.

Case matrix:

| case                                   | checked                                                   |
| -------------------------------------- | --------------------------------------------------------- |
| registry with a port and a path, tag   | `<registry>/jobqueue/operator:<tag or appVersion>`        |
| registry with a digest                 | `<registry>/jobqueue/operator@sha256:...`                 |
| no registry                            | the old reference, and NOTES.txt warns (unless `Never`)   |
| malformed registries                   | refused by values.schema.json                             |
| `make -n images REGISTRY=...`          | builds and pushes exactly the references the chart pulls  |
| `make images` without REGISTRY         | refused with the fix in the message                       |
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from typing import Any

import helm_python
import pytest

from tests.support import chart

REGISTRY = "registry.example.com:5000/platform"
DIGEST = "sha256:" + "ab" * 32


def operator_image(values: dict[str, Any]) -> str:
    deployment = chart.one(chart.render(values), "Deployment")
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


@pytest.mark.parametrize(
    ("image_values", "expected"),
    [
        ({}, "jobqueue/operator:0.1.0"),
        ({"registry": REGISTRY}, f"{REGISTRY}/jobqueue/operator:0.1.0"),
        ({"registry": "ghcr.io", "tag": "0.1.1"}, "ghcr.io/jobqueue/operator:0.1.1"),
        ({"registry": REGISTRY, "digest": DIGEST}, f"{REGISTRY}/jobqueue/operator@{DIGEST}"),
        ({"registry": "localhost:5001", "repository": "ops/jq"}, "localhost:5001/ops/jq:0.1.0"),
    ],
)
def test_registry_repository_and_tag_or_digest_make_the_image(
    image_values: dict[str, Any], expected: str
) -> None:
    assert operator_image({"image": image_values}) == expected


@pytest.mark.parametrize("registry", ["https://ghcr.io", "ghcr.io/acme/", "ghcr.io/Acme", "ghcr.io:port"])
def test_malformed_registries_are_refused(registry: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        chart.render({"image": {"registry": registry}})
    assert "at '/image/registry'" in str(refused.value)


def test_notes_warn_when_the_image_comes_from_nowhere() -> None:
    assert "WARNING: image.registry is empty" in chart.notes({})
    assert "make images REGISTRY=<registry>" in chart.notes({})
    assert "WARNING" not in chart.notes({"image": {"registry": REGISTRY}})
    # Images loaded into the nodes by hand (kind) need no registry.
    assert "WARNING" not in chart.notes({"image": {"pullPolicy": "Never"}})


# --- make images --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def make() -> str:
    path = shutil.which("make")
    if path is None:
        reason = "make not on PATH; install it with `apt-get install -y make`"
        print(reason)
        pytest.skip(reason)
    return path


def make_dry_run(make: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in {"REGISTRY", "IMAGE_TAG", "DOCKER"}}
    return subprocess.run(
        [make, "--no-print-directory", "-n", *args],
        cwd=chart.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def docker_commands(output: str) -> list[list[str]]:
    return [shlex.split(line) for line in output.splitlines() if line.startswith("docker ")]


def test_make_images_pushes_what_the_chart_pulls(make: str) -> None:
    result = make_dry_run(make, "images", f"REGISTRY={REGISTRY}")
    assert result.returncode == 0, result.stderr
    commands = docker_commands(result.stdout)
    builds = {c[c.index("-f") + 1]: c[c.index("-t") + 1] for c in commands if c[1] == "build"}
    pushes = [c[2] for c in commands if c[1] == "push"]
    assert builds == {
        "operator/Dockerfile": operator_image({"image": {"registry": REGISTRY}}),
        "worker_runtime/Dockerfile": f"{REGISTRY}/jobqueue/worker-runtime:0.1.0",
    }
    assert sorted(pushes) == sorted(builds.values())
    for dockerfile in builds:
        assert (chart.ROOT / dockerfile).is_file()
    # Every build runs in the repository root, which both Dockerfiles copy from.
    assert all(c[-1] == "." for c in commands if c[1] == "build")


def test_make_images_tag_follows_image_tag(make: str) -> None:
    result = make_dry_run(make, "images", "REGISTRY=ghcr.io/acme", "IMAGE_TAG=0.2.0-rc1", "DOCKER=podman")
    assert result.returncode == 0, result.stderr
    assert "podman push ghcr.io/acme/jobqueue/operator:0.2.0-rc1" in result.stdout
    assert "--set image.tag=0.2.0-rc1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"), [((), "set REGISTRY"), (("REGISTRY=ghcr.io/acme/",), "trailing")]
)
def test_make_images_refuses_a_missing_or_malformed_registry(
    make: str, args: tuple[str, ...], message: str
) -> None:
    result = make_dry_run(make, "images", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert docker_commands(result.stdout) == []


def test_make_help_says_images_needs_docker(make: str) -> None:
    result = subprocess.run(
        [make, "--no-print-directory", "help"],
        cwd=chart.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if re.match(r"\s*images\s", line))
    assert "Docker" in line and "not runnable here" in line
