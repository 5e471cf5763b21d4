"""The operator's tunables: every field explained, bad values refused, kopf's part applied.

Case matrix: each field of each section has a description that names its unit or says why its
default; a tunable out of range or misspelt -> ValidationError naming it; frozen; ``apply_to_kopf``
writes kopf's backoffs; docs/operator.md lists every tunable.
"""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from jobqueue_operator import tunables
from pydantic import BaseModel, ValidationError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
SECTIONS: list[type[BaseModel]] = [
    tunables.LoopTunables,
    tunables.ApiTunables,
    tunables.ProbeTunables,
    tunables.SecretTunables,
    tunables.KopfTunables,
    tunables.LeaderElectionTunables,
]


@pytest.mark.parametrize(
    ("section", "name"),
    [(section, name) for section in SECTIONS for name in section.model_fields],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_every_field_is_described(section: type[BaseModel], name: str) -> None:
    description = section.model_fields[name].description or ""
    assert len(description) >= 30, f"{section.__name__}.{name}: say its unit and why its default"
    if name.endswith("_seconds") or name.endswith("_backoffs"):
        assert "second" in description.lower(), f"{section.__name__}.{name}: name the unit"


def test_every_section_is_in_tunables() -> None:
    held = {field.annotation for field in tunables.Tunables.model_fields.values()}
    assert held == set(SECTIONS)


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [("loop", "tick_seconds", 0), ("loop", "pass_concurrency", 0), ("probe", "attemps", 3)],
    ids=["zero-tick", "no-concurrency", "misspelt"],
)
def test_bad_values_are_refused_with_the_field(section: str, name: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        tunables.Tunables.model_validate({section: {name: value}})
    assert f"{section}.{name}" in str(caught.value)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        tunables.Tunables().loop.tick_seconds = 5  # type: ignore[misc]


def test_apply_to_kopf() -> None:
    settings = kopf.OperatorSettings()
    tuned = tunables.KopfTunables(
        default_backoff_seconds=7, api_error_backoffs=(1, 3), watch_reconnect_seconds=2
    )
    tunables.apply_to_kopf(tuned, settings)
    assert settings.execution.default_backoff == 7
    assert list(settings.networking.error_backoffs) == [1, 3]
    assert settings.watching.reconnect_backoff == 2


@pytest.mark.parametrize(
    "path",
    [
        f"{section}.{name}"
        for section, field in tunables.Tunables.model_fields.items()
        for name in field.annotation.model_fields
    ],  # type: ignore[union-attr]
)
def test_every_tunable_is_documented(path: str) -> None:
    assert f"`{path}`" in DOCS.read_text(), f"docs/operator.md does not list the tunable {path}"
