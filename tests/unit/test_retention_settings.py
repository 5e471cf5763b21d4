"""Retention settings: bounded defaults with one source, the JOBQUEUE_* variables, and the
JobQueue's ``spec.jobs.retention`` handed to the workers (tests/integration/runtime/test_retention.py
shows the trimming itself against a real redis-server).
"""

from __future__ import annotations

import pytest
from jobqueue_operator import spec
from pydantic import ValidationError

from tests.unit.test_spec import minimal
from worker_runtime import WorkerSettings
from worker_runtime.retention import Keep, Retention


def test_retention_defaults_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WorkerSettings()
    retention = settings.retention()
    for keep in (retention.completed, retention.dead):
        assert 0 < keep.count <= 100_000 and 0 < keep.seconds <= 30 * 86_400
    assert retention == Retention()  # one source for the defaults
    for field in ("keep_completed", "keep_dead", "keep_completed_seconds", "keep_dead_seconds"):
        with pytest.raises(ValidationError, match=field):
            WorkerSettings(**{field: -1})
    monkeypatch.setenv("JOBQUEUE_KEEP_DEAD", "7")
    monkeypatch.setenv("JOBQUEUE_KEEP_DEAD_SECONDS", "3600")
    assert WorkerSettings().retention().dead == Keep(count=7, seconds=3600)


def test_a_jobqueue_sets_the_retention_of_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    body = minimal()
    body["spec"]["jobs"] = {"retention": {"dead": {"count": 50, "ageSeconds": 3600}}}
    for name, value in spec.parse_jobqueue(body).worker_env().items():
        monkeypatch.setenv(name, value)
    on_the_pod = WorkerSettings().retention()
    assert on_the_pod.dead == Keep(count=50, seconds=3600)
    assert on_the_pod.completed == Retention().completed
    body["spec"]["jobs"]["retention"]["dead"]["count"] = -1
    with pytest.raises(spec.SpecError, match=r"retention\.dead\.count"):
        spec.parse_jobqueue(body)
