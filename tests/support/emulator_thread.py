"""Serve a :class:`RealisticEmulator` from its own thread and event loop.

For sync tests, ``kopf run`` subprocesses, ``KopfRunner`` and kubectl: nothing in the test's own
loop (if any) has to keep running for the emulator to answer. Calls into the emulator's
synchronous API go through :meth:`EmulatorThread.call`, which runs them in the emulator's loop::

    with EmulatorThread() as emu:
        emu.call(emu.emulator.register_crd, CRD_PATH)
        body = emu.call(emu.emulator.get_object, JOBQUEUES, "default", "q1")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, Self, TypeVar

import kmock

from tests.support.emulator import RealisticEmulator, shorten_shutdown

P = ParamSpec("P")
T = TypeVar("T")


class EmulatorThread:
    def __init__(self, startup_timeout: float = 10.0, **options: Any) -> None:
        self.options = options
        self.startup_timeout = startup_timeout
        self._emulator: RealisticEmulator | None = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)

    @property
    def emulator(self) -> RealisticEmulator:
        if self._emulator is None:
            raise RuntimeError("The emulator thread is not running.")
        return self._emulator

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The emulator thread is not running.")
        return self._url

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a synchronous function in the emulator's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("The emulator thread is not running.")

        async def run() -> T:
            return fn(*args, **kwargs)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout=10)

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self.startup_timeout) or self._error is not None:
            raise RuntimeError("The emulator did not start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RealisticEmulator(**self.options) as emulator, kmock.Server(emulator) as server:
            shorten_shutdown(server)
            self._emulator = emulator
            self._url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
