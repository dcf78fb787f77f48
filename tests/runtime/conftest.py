"""
Runtime tests run on asyncio and on trio. trio gets a fresh ``MockClock(autojump_threshold=0)``
per test, so virtual time jumps whenever every task is blocked: a 300 s break is tested in
milliseconds, and a deadlock jumps straight to the hang guard's deadline instead of hanging.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

import supervisor._actor
from supervisor import Supervisor

#: Hang guard (seconds; virtual on trio, real on asyncio). Tests with longer virtual waits
#: pass their own limit.
HANG = float(os.environ.get("RINGFENCE_TEST_HANG", "30"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both backends; trio with a fresh autojumping mock clock per test."""
    if request.param == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return "asyncio"


@contextmanager
def guard(seconds: float = HANG) -> Iterator[None]:
    """Fail, instead of hanging, when the body has not finished in *seconds*."""
    with anyio.fail_after(seconds):
        yield


class Gate:
    """An event the test opens to let a blocked fake call finish."""

    def __init__(self) -> None:
        self.event = anyio.Event()

    def open(self) -> None:
        self.event.set()


class Fake:
    """
    A scripted fake dependency (httpx's MockTransport habit). Each call plays the next step:
    a value to return, an exception to raise, a ``Gate`` to wait on, or ``("sleep", s, step)``.
    When the script runs out it returns ``"ok"``. Every call is recorded with the time.
    """

    def __init__(self, *steps: object) -> None:
        self.script: deque[object] = deque(steps)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.times: list[float] = []
        self.running = 0
        self.entered = anyio.Event()  # set when a call has started

    def add(self, *steps: object) -> None:
        self.script.extend(steps)

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        self.times.append(anyio.current_time())
        self.running += 1
        self.entered.set()
        try:
            step = self.script.popleft() if self.script else "ok"
            return await self._play(step)
        finally:
            self.running -= 1

    async def _play(self, step: object) -> Any:
        if isinstance(step, tuple) and step and step[0] == "sleep":
            await anyio.sleep(step[1])
            return await self._play(step[2])
        if isinstance(step, Gate):
            await step.event.wait()
            return "ok"
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step()
        return step

    @property
    def count(self) -> int:
        return len(self.calls)


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    """
    A fresh supervisor (not entered). At teardown, every dependency must have no call in
    flight and none queued: every admitted call ended (h11's round-trip check habit).
    """
    supervisor = Supervisor(rng=random.Random(1234))
    yield supervisor
    for name, status in supervisor.status().items():
        assert (status.in_flight, status.queued) == (0, 0), f"{name} leaked a slot or a waiter"


@pytest.fixture
def is_trio(anyio_backend: object) -> bool:
    """True when the test runs on trio (virtual time)."""
    return isinstance(anyio_backend, tuple)


@pytest.fixture(params=["fast", "template", "general"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """
    On asyncio: the generated fast path, its template (``RINGFENCE_INLINE=0``), and the
    general path (trio has one path: run once).
    """
    if request.param == "general":
        monkeypatch.setattr(supervisor._actor, "FAST_PATH", False)
    elif request.param == "template":
        monkeypatch.setenv("RINGFENCE_INLINE", "0")
    return str(request.param)


@pytest.fixture
def each_path(path: str) -> str:
    """Every attempt path: asyncio's three, trio's one (see pytest_collection_modifyitems)."""
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """trio has a single attempt path: its runs under asyncio's other paths' names go."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        other_path = params.get("path", "fast") != "fast"
        (drop if other_path and "trio" in str(params.get("anyio_backend")) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
