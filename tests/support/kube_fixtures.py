"""Kubernetes-emulator fixtures, loaded by ``tests/conftest.py`` as a pytest plugin.

Fixtures:

* ``emulator`` — a :class:`RealisticEmulator` served on a free port in the test's own loop (async
  tests). Options come from ``@pytest.mark.emulator(**kwargs)``; ``emulator.url`` is its URL.
* ``emulator_thread`` — an :class:`EmulatorThread` (own thread and loop) for sync tests, kubectl,
  ``kopf run`` subprocesses and ``KopfRunner``; same marker for options.
* ``kubeconfig`` — the path of the (pinned) ``$KUBECONFIG`` file, rewritten for this test's emulator
  (``emulator`` if the test uses it, else ``emulator_thread``).
* ``kubectl`` — ``kubectl("get", "jq", "-o", "json")`` runs ``.venv/bin/kubectl`` with that kubeconfig
  and returns the ``CompletedProcess`` (``check=True`` by default); ``kubectl.popen(...)`` starts it
  in the background; skipped (with the reason) if kubectl is missing.
* ``kube`` / ``kube_sync`` — :class:`AsyncKube` / :class:`SyncKube` REST clients for the emulator
  (create/get/list/patch/delete; bodies via ``secret_body``/``deployment_body``/``jobqueue_body``).
* ``start_operator`` — ``await start_operator(register=fn, namespaces=[...])`` runs a kopf operator
  (:class:`OperatorThread`) against ``emulator`` with a fresh registry; stopped at teardown.
* ``jobqueue_crd_path`` — the product CRD if generated, else the harness's own test CRD.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from tests.support import kubeconfig as kubeconfig_mod

if TYPE_CHECKING:  # imported lazily: kopf and kmock cost ~1.5 s, unit tests should not pay it
    from tests.support.emulator import RealisticEmulator
    from tests.support.emulator_thread import EmulatorThread
    from tests.support.kube_client import AsyncKube, SyncKube
    from tests.support.operator_thread import OperatorThread

# Pin $KUBECONFIG before anything imports `kubernetes` (it reads the variable once, at import).
KUBECONFIG_PATH = kubeconfig_mod.pin_kubeconfig_env()

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
PRODUCT_CRD_PATH = REPO_ROOT / "crds" / "jobqueues.jobqueue.dev.yaml"
TEST_CRD_PATH = pathlib.Path(__file__).with_name("jobqueue_test_crd.yaml")
KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"


class Kubectl:
    """Runs kubectl with the test's kubeconfig, a private HOME and a private discovery cache."""

    def __init__(self, binary: str, kubeconfig: pathlib.Path, home: pathlib.Path) -> None:
        self.binary = binary
        self.env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))
        self.cache_dir = home / "kube-cache"

    def command(self, *args: str) -> list[str]:
        return [self.binary, f"--cache-dir={self.cache_dir}", *args]

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion; with ``check``, a non-zero exit fails with the full output."""
        cmd = self.command(*args)
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{output}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start in the background (e.g. ``wait``/``delete --wait``); the caller must reap it."""
        return subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


StartOperator = Callable[..., Awaitable["OperatorThread"]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator(**options): options for the RealisticEmulator fixtures.")


def pytest_unconfigure(config: pytest.Config) -> None:
    KUBECONFIG_PATH.unlink(missing_ok=True)


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("emulator"))):
        options.update(marker.kwargs)
    return options


@pytest_asyncio.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[RealisticEmulator]:
    import kmock

    from tests.support.emulator import RealisticEmulator, shorten_shutdown

    async with RealisticEmulator(**_options(request)) as emu, kmock.Server(emu) as server:
        shorten_shutdown(server)
        yield emu


@pytest.fixture
def emulator_thread(request: pytest.FixtureRequest) -> Iterator[EmulatorThread]:
    from tests.support.emulator_thread import EmulatorThread

    with EmulatorThread(**_options(request)) as thread:
        yield thread


def _emulator_url(request: pytest.FixtureRequest) -> str:
    if "emulator" in request.fixturenames:
        emu: RealisticEmulator = request.getfixturevalue("emulator")
        return str(emu.url).rstrip("/")
    thread: EmulatorThread = request.getfixturevalue("emulator_thread")
    return thread.url


@pytest.fixture
def kubeconfig(request: pytest.FixtureRequest) -> pathlib.Path:
    return kubeconfig_mod.write(KUBECONFIG_PATH, _emulator_url(request))


@pytest.fixture
def kubectl(kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Kubectl:
    binary = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if binary is None:
        pytest.skip(f"kubectl is not installed (looked for {KUBECTL} and on PATH)")
    return Kubectl(binary, kubeconfig, tmp_path)


@pytest_asyncio.fixture
async def kube(emulator: RealisticEmulator) -> AsyncIterator[AsyncKube]:
    from tests.support.kube_client import AsyncKube

    async with AsyncKube(str(emulator.url)) as client:
        yield client


@pytest.fixture
def kube_sync(emulator_thread: EmulatorThread) -> SyncKube:
    from tests.support.kube_client import SyncKube

    return SyncKube(emulator_thread.url)


@pytest_asyncio.fixture
async def start_operator(emulator: RealisticEmulator) -> AsyncIterator[StartOperator]:
    from tests.support.operator_thread import OperatorThread

    started: list[OperatorThread] = []

    async def start(**kwargs: Any) -> OperatorThread:
        kwargs.setdefault("server", str(emulator.url).rstrip("/"))
        operator = OperatorThread(**kwargs)
        started.append(operator)
        await operator.__aenter__()
        return operator

    yield start
    for operator in reversed(started):
        await operator.__aexit__(None, None, None)


@pytest.fixture
def jobqueue_crd_path() -> pathlib.Path:
    return PRODUCT_CRD_PATH if PRODUCT_CRD_PATH.exists() else TEST_CRD_PATH
