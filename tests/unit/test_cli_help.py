"""``jobqueue --help``: every option of every command says what it is, with its unit and default."""

from __future__ import annotations

import argparse

import pytest

from worker_runtime.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    own = {name: p for name, p in sub.choices.items() if name in {"worker", "enqueue", "stats", "dead"}}
    return {"jobqueue": parser, **own}


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_has_help_with_its_default(name: str) -> None:
    parser = _commands()[name]
    assert parser.description and "``" not in parser.description
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
            continue
        assert action.help and "``" not in action.help, f"{name} {action.dest}: {action.help!r}"
        takes_a_value = action.option_strings and action.nargs != 0
        if takes_a_value:
            assert "default" in action.help, f"{name} {action.option_strings[0]}: say its default"
