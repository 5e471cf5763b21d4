"""The operator's production entry point as a command line, for tests and benches that run it as a child."""

from __future__ import annotations

import sys


def command(*flags: str, namespace: str = "default") -> list[str]:
    """``python -m worker_runtime operator run --namespace NS`` and ``flags``."""
    return [sys.executable, "-m", "worker_runtime", "operator", "run", "--namespace", namespace, *flags]
