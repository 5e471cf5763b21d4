"""The runtime's single sources agree with whatever repeats them.

| source                   | must agree with                                                      |
| ------------------------ | -------------------------------------------------------------------- |
| ``states.JobState``      | a set per state (keys), a field per state (QueueObservation)         |
| ``states.JobState``      | the ``state`` values the Lua scripts write                           |
| ``states.markdown()``    | the tables of docs/runtime.md                                        |
| ``states.TRANSITIONS``   | the Lua files; every script that moves jobs has a row                |
| ``keys.PRIORITY_OFFSET`` | the offset written out in ``lua/include/store_job.lua``              |
| ``options.JobOptions``   | its JSON: unset options left out, unknown ones ignored               |
| ``QueueObservation``     | the former keyword ``retry`` still accepted                          |
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from worker_runtime import Backoff, keys, options, states
from worker_runtime.admin_commands import table
from worker_runtime.observation import QueueObservation
from worker_runtime.scripts import LUA_DIR, Script
from worker_runtime.settings import RetrySettings
from worker_runtime.states import JobState

ROOT = Path(__file__).resolve().parents[2]
# Scripts that read or keep a job where it is: no row in the table.
NOT_TRANSITIONS = {
    Script.PROBE,
    Script.PROGRESS,
    Script.EXTEND_LEASE,
    Script.CONFIGURE_FLOW,
    Script.SET_SCHEDULE,
}


def test_every_state_has_its_set_and_its_count() -> None:
    queue_keys = keys.QueueKeys.for_queue("q")
    fields = {f.name for f in dataclasses.fields(QueueObservation)}
    for state in JobState:
        assert queue_keys.of_state(state) == f"jq:{{q}}:{state}"
        assert state.value in fields
    assert set(states.MEANING) == set(JobState)
    assert set(states.SCHEDULED) < set(JobState)


def test_lua_scripts_write_only_known_states() -> None:
    written = set()
    for path in [*LUA_DIR.glob("*.lua"), *LUA_DIR.glob("include/*.lua")]:
        written |= set(re.findall(r'"HSET", \w+, "state", "(\w+)"', path.read_text()))
    known = {s.value for s in JobState}
    assert written <= known, f"scripts write unknown states {written - known}"
    # The enqueue scripts set waiting/delayed through a variable; every other state is literal.
    assert written >= known - {"delayed"}


def test_every_transition_is_a_script_and_every_moving_script_a_transition() -> None:
    scripts_in_table = {t.script for t in states.TRANSITIONS}
    assert scripts_in_table | NOT_TRANSITIONS == set(Script)
    for script in Script:
        assert (LUA_DIR / f"{script}.lua").is_file()


def test_docs_quote_the_state_table() -> None:
    assert states.markdown() in (ROOT / "docs" / "runtime.md").read_text()


def test_priority_offset_is_the_same_in_lua() -> None:
    store_job = (LUA_DIR / "include" / "store_job.lua").read_text()
    offsets = set(re.findall(r'\(o\["priority"\] or 0\) \+ (\d+)\)', store_job))
    assert offsets == {str(keys.PRIORITY_OFFSET)}


def test_job_options_json_round_trip() -> None:
    plain = options.JobOptions(attempts=3, timeout=300, backoff=(1, 300))
    # Options at their default are left out (Lua has no JSON null, and the text stays short), and
    # so are the ones left to the worker (attempts, timeout, backoff not ``given``).
    assert plain.encoded == "{}"
    chosen = dataclasses.replace(plain, given=options.LEFT_TO_THE_WORKER)
    assert chosen.encoded == '{"attempts":3,"timeout":300,"backoff":[1,300]}'
    assert options.JobOptions.decode(chosen.encoded) == chosen  # written before: all three given
    with_ttl = dataclasses.replace(chosen, ttl=0.5, priority=-3, delay=0.1)
    assert options.JobOptions.decode(with_ttl.encoded) == with_ttl
    assert options.JobOptions.decode(with_ttl.encoded.encode()) == with_ttl
    newer = with_ttl.encoded[:-1] + ',"rate_key":"x"}'  # an option a newer producer added
    assert options.JobOptions.decode(newer) == with_ttl
    assert hash(plain) != hash(with_ttl) and plain != with_ttl


def test_resolved_options_fit_the_compact_hash_encoding() -> None:
    """Redis keeps a hash whose values are all <= 64 bytes as a listpack (about 2.5x smaller)."""

    def encoded(**given: float) -> str:
        return options.resolve(options.JobSpec("n", **given), None, RetrySettings()).encoded  # type: ignore[arg-type]

    assert encoded() == "{}"  # attempts, timeout and backoff are the worker's to fill in
    assert encoded(attempts=5, timeout=60) == '{"attempts":5,"timeout":60}'
    # All three and one more option fit; each further one adds 10 to 15 bytes.
    given = {"attempts": 5, "timeout": 60.5, "backoff": Backoff(2, 600)}
    assert max(len(encoded(**given, ttl=3600)), len(encoded(**given, priority=-500))) <= 64


def test_observation_accepts_its_former_keyword() -> None:
    old = QueueObservation(queue="q", observed_at_ms=1, waiting=2, retry=3, failed_total=4)
    assert old.retrying == 3 and old.retry == 3 and old.failed_total == 4
    assert dataclasses.replace(old, waiting=5).retrying == 3
    with pytest.raises(TypeError, match="not both"):
        QueueObservation(queue="q", observed_at_ms=1, retry=1, retrying=1)


def test_cli_tables_are_plain_aligned_text() -> None:
    assert table("t", ("a", "bb"), [("long value", 1), ("x", 22)]) == (
        "t\na           bb\nlong value  1\nx           22"
    )
