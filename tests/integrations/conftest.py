"""
Tests of the optional integrations (Prometheus, OpenTelemetry, ASGI, the dashboard).

In-process tests run on asyncio and trio, trio with a fresh autojumping ``MockClock`` per test
(the runtime tests' habit). The ASGI and browser tests run the example app under a real uvicorn
server on a free loopback port, in a thread with its own event loop, and talk to it over HTTP;
they wait for uvicorn to say it has started (an event set at the end of its startup), never by
sleeping or polling.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_app.py"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both backends; trio with a fresh autojumping mock clock per test."""
    if request.param == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return "asyncio"


@pytest.fixture
def is_trio(anyio_backend: object) -> bool:
    """True when the test runs on trio (virtual time)."""
    return isinstance(anyio_backend, tuple)


def load_example() -> ModuleType:
    """Import ``examples/fastapi_app.py`` (examples/ is not a package) as a fresh module."""
    spec = importlib.util.spec_from_file_location("ringfence_example_fastapi_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up here
    spec.loader.exec_module(module)
    return module


class _Server(uvicorn.Server):
    """uvicorn, setting ``ready`` when its startup ends (``started`` says whether it worked)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


class LiveServer:
    """
    An ASGI app served by a real uvicorn on ``127.0.0.1`` and a free port, in a thread with
    its own asyncio loop (the demo's FlakyLLMServer does the same). ``base`` is its URL.
    """

    #: Seconds to wait for uvicorn's startup (the app's lifespan included) before failing.
    STARTUP = 30.0

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        # A client still holding /events open at shutdown would keep uvicorn waiting for it:
        # the graceful timeout bounds that wait, so a test that forgets one fails, not hangs.
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=5
        )
        self.server = _Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        finally:
            self.server.ready.set()  # failed before its startup ended: nobody waits forever

    def start(self) -> None:
        """Start, and return once uvicorn has run the app's lifespan startup and listens."""
        self._thread.start()
        if not self.server.ready.wait(self.STARTUP):
            msg = f"uvicorn did not finish its startup within {self.STARTUP} s"
            raise RuntimeError(msg)
        if not self.server.started:
            self._thread.join(timeout=15)
            msg = "uvicorn failed to start (its error is logged above)"
            raise RuntimeError(msg)

    def subscribers(self) -> int:
        """Event streams open on the app's supervisor (``EventHub.subscribers``, read-only)."""
        return int(self.app.state.supervisor.subscribers)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()
        assert not self._thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture
def example() -> ModuleType:
    """The example FastAPI app's module, freshly imported."""
    return load_example()


@pytest.fixture
def live(example: ModuleType) -> Iterator[LiveServer]:
    """The example app (a fresh supervisor) under a real uvicorn server."""
    server = LiveServer(example.create_app(seed=11))
    server.start()
    try:
        yield server
    finally:
        server.stop()
