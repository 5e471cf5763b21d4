"""Kubeconfig files pointing kubectl, ``kopf run`` and the kubernetes client at the emulator.

The ``kubernetes`` package reads ``$KUBECONFIG`` once, at import time, so the test session points it
at one fixed path early (:func:`pin_kubeconfig_env`, called when the fixtures plugin loads, before
anything imports ``kubernetes``) and each test rewrites that file for its emulator's URL.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import yaml

CONTEXT = "emulator"
ENV = "KUBECONFIG"

#: The user's own KUBECONFIG before the tests pinned it (for opt-in real-cluster tests).
ORIGINAL_KUBECONFIG: str | None = os.environ.get(ENV)


def render(server: str, namespace: str = "default", token: str = "emulator-token") -> dict[str, object]:
    """A kubeconfig document for a plain-HTTP server with a token (the emulator counts requests by
    token, so each client of a test can have its own)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write(
    path: str | os.PathLike[str], server: str, namespace: str = "default", token: str = "emulator-token"
) -> pathlib.Path:
    """(Re)write a kubeconfig file atomically and return its path."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(render(server, namespace, token), sort_keys=False), encoding="utf-8")
    tmp.replace(target)
    return target


def pin_kubeconfig_env() -> pathlib.Path:
    """Point ``$KUBECONFIG`` at a per-process file (idempotent).

    Until a test rewrites it, the file names an unreachable server, never a real cluster.
    """
    current = os.environ.get(ENV)
    if current and pathlib.Path(current).name == f"jobqueue-tests-{os.getpid()}.kubeconfig":
        return pathlib.Path(current)
    path = pathlib.Path(tempfile.gettempdir()) / f"jobqueue-tests-{os.getpid()}.kubeconfig"
    write(path, "http://127.0.0.1:9")
    os.environ[ENV] = str(path)
    return path
