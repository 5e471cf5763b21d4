"""A worker module that raises on import, as a module with a bug does (see test_cli.py)."""

from __future__ import annotations

SETTINGS = {"rate": 0}
RATIO = 1 / SETTINGS["rate"]
