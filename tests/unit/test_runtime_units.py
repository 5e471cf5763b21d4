"""Pure parts of the runtime: backoff, key names, script includes, payload encoding, CLI parsing."""

from __future__ import annotations

import math
import random
import re

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker_runtime import App, Backoff, JobContext, PayloadError, WorkerSettings, scripts
from worker_runtime.app import encode_payload
from worker_runtime.cli import build_parser
from worker_runtime.keys import QueueKeys, validate_queue_name


@given(st.floats(0.001, 10), st.floats(10, 600), st.integers(1, 30), st.integers(0, 2**32))
def test_backoff_delays_never_shrink_and_stay_capped(
    base: float, cap: float, attempt: int, seed: int
) -> None:
    backoff, rng = Backoff(base, cap), random.Random(seed)
    delay, next_delay = backoff.delay(attempt, rng), backoff.delay(attempt + 1, rng)
    assert backoff.ceiling(attempt) / 2 <= delay <= backoff.ceiling(attempt) <= cap
    # Equal jitter: the next delay is at least half its ceiling, i.e. at least this ceiling, unless capped.
    assert next_delay >= delay or backoff.ceiling(attempt + 1) < 2 * backoff.ceiling(attempt)


def test_backoff_refuses_negative_values() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Backoff(-1, 10)


def test_every_key_carries_the_hash_tag() -> None:
    keys = QueueKeys.for_queue("emails")
    fields = [n for n in QueueKeys.__dataclass_fields__ if n != "name"]
    assert len(fields) > 10
    assert all(getattr(keys, n).startswith("jq:{emails}:") for n in fields)
    assert keys.job("abc") == "jq:{emails}:job:abc"


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a:b", "has space", "x" * 201])
def test_bad_queue_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_queue_name(bad)


def test_scripts_expand_includes_once_and_have_headers() -> None:
    for loaded in scripts.all_scripts():
        assert "@include" not in loaded.source
        assert loaded.source.count("local function now_ms") <= 1
        assert re.search(r"KEYS\[1\]|ARGV\[1\]", loaded.source), loaded.name
        assert "Returns" in loaded.source, f"{loaded.name}.lua header must say what it returns"


def test_encode_payload_limits() -> None:
    assert encode_payload({"a": "é"}, 100) == '{"a":"é"}'
    with pytest.raises(PayloadError, match="over the limit"):
        encode_payload("é" * 10, 10)  # bytes count, not characters


class In(pydantic.BaseModel):
    n: int


def test_handler_payload_model_is_detected() -> None:
    app = App("q")

    @app.job(attempts=2)
    async def typed(ctx: JobContext, payload: In) -> None: ...

    @app.job(name="untyped")
    def plain(ctx: JobContext, payload: dict[str, int]) -> None: ...

    assert app.jobs["typed"].model is In and app.jobs["typed"].attempts == 2
    assert app.jobs["untyped"].model is None and not app.jobs["untyped"].is_async
    assert app.jobs["typed"].parse_payload({"n": "3"}) == In(n=3)
    with pytest.raises(PayloadError):
        app.jobs["typed"].parse_payload({"n": "x"})
    with pytest.raises(ValueError, match="registered twice"):
        app.job(name="typed")(plain)


def test_unresolvable_payload_annotation_is_refused_unless_model_given() -> None:
    class Local(pydantic.BaseModel):
        n: int

    app = App("q")

    async def handler(ctx: JobContext, payload: Local) -> None: ...

    with pytest.raises(TypeError, match="pass model="):
        app.job()(handler)
    app.job(model=Local)(handler)
    assert app.jobs["handler"].model is Local


def test_cli_parses_worker_and_queue_commands() -> None:
    parser = build_parser()
    args = parser.parse_args(["worker", "app:app", "--concurrency", "7"])
    assert args.app == "app:app" and args.concurrency == 7
    args = parser.parse_args(["enqueue", "emails", "send", '{"to": "x"}', "--count", "3"])
    assert (args.queue, args.name, args.count) == ("emails", "send", 3)
    args = parser.parse_args(["dead", "emails", "replay"])
    assert args.action == "replay" and args.job_ids == []
    args = parser.parse_args(["dead", "emails", "purge", "a", "b", "--yes"])
    assert args.job_ids == ["a", "b"] and args.yes and not args.all


@pytest.mark.parametrize(
    ("base", "cap"), [(math.nan, 10), (1, math.inf), (-math.inf, 10), (True, 10), ("1", 10), (1, None)]
)
def test_backoff_refuses_what_is_not_a_finite_number_at_construction(base: object, cap: object) -> None:
    with pytest.raises(ValueError, match="finite number"):
        Backoff(base, cap)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["backoff_base_seconds", "backoff_cap_seconds", "default_timeout_seconds"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_settings_refuse_infinite_and_nan_seconds(field: str, value: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        WorkerSettings(**{field: value})
