"""
An asyncio event loop on virtual time, for tests that compare asyncio with trio's MockClock.

``VirtualClockLoop.time()`` is a number the loop moves itself: whenever the loop would sleep
(no callback ready, the next timer in the future), it jumps straight to that timer instead,
as trio's ``MockClock(autojump_threshold=0)`` does. The jump is made the way MockClock makes
it (``now += deadline - now``, again while short), so both backends visit the same instants.
The supervisor reads ``loop.time`` (``_backend_clock``) and asyncio's timers are
``loop.call_at``, so the one virtual clock covers both.

:meth:`VirtualClockLoop.wait_idle` is ``trio.testing.wait_all_tasks_blocked()``: it returns
when every other task is blocked, before the clock jumps (a pending idle waiter wins over a
jump, as in trio). anyio's own ``wait_all_tasks_blocked`` on asyncio polls with
``sleep(0.1)``, which on this loop would move the clock.

Only for tests that run no threads: a worker thread's completion would not stop the clock
from jumping past it. With no timer and nothing ready the loop blocks in the real selector
(only anyio's shutdown of the default executor gets there).
"""

from __future__ import annotations

import asyncio
import selectors
from collections import deque
from typing import Any

import pytest

__all__ = ("VirtualClockLoop", "anyio_backend", "jump", "on_virtual_time", "wait_idle")


class _JumpingSelector(selectors.DefaultSelector):
    """The real selector, never sleeping while a timer is pending: the loop jumps instead."""

    loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        events: list[tuple[Any, int]] = super().select(0)
        loop = self.loop
        if events or timeout == 0 or loop is None:
            return events
        if loop._on_idle():
            return events
        if timeout is None:  # nothing scheduled at all: a real wait (threads only)
            return list(super().select(None))
        return events


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is virtual and jumps to the next timer when idle."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        self._virtual_now = 0.0
        self._idle_waiters: deque[asyncio.Future[None]] = deque()
        selector.loop = self

    def time(self) -> float:
        return self._virtual_now

    def jump(self, seconds: float) -> None:
        """Move the clock forward by *seconds* (MockClock.jump)."""
        if seconds < 0:
            msg = f"'seconds' must be >= 0, got {seconds!r}"
            raise ValueError(msg)
        self._virtual_now += seconds

    async def wait_idle(self) -> None:
        """Return once every other task is blocked (trio.testing.wait_all_tasks_blocked)."""
        waiter: asyncio.Future[None] = self.create_future()
        self._idle_waiters.append(waiter)
        await waiter

    def _on_idle(self) -> bool:
        """Nothing is ready: wake an idle waiter, else jump to the next timer. True if
        something happened."""
        waiters = self._idle_waiters
        woke = False
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woke = True
        if woke:
            return True
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        if not scheduled:
            return False
        when = scheduled[0].when()
        while self._virtual_now < when:  # MockClock's jump, repeated while rounding falls short
            self._virtual_now += when - self._virtual_now
        return True


async def wait_idle() -> None:
    """Every other task blocked, on trio (MockClock) or on a :class:`VirtualClockLoop`."""
    loop: asyncio.AbstractEventLoop | None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, VirtualClockLoop):
        await loop.wait_idle()
        return
    import trio.testing

    await trio.testing.wait_all_tasks_blocked()


def jump(seconds: float) -> None:
    """Move the virtual clock forward by *seconds* now, with no task running meanwhile: the
    loop resumes as a stalled process does, every timer due at once (MockClock.jump)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, VirtualClockLoop):
        loop.jump(seconds)
        return
    import trio
    from trio.testing import MockClock

    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    clock.jump(seconds)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """
    Both backends on virtual time: trio's ``MockClock(autojump_threshold=0)``, asyncio on
    :class:`VirtualClockLoop`. A test module takes it by importing it (``from
    ._virtual_loop import anyio_backend as anyio_backend``), in place of conftest's.
    """
    return _virtual_backend(request.param)


def on_virtual_time() -> pytest.MarkDecorator:
    """
    One test of a real-clock module on virtual time, both backends: a direct parametrization
    of ``anyio_backend``, which overrides the module's fixture for that test only (conftest's
    ``is_trio`` is then true on asyncio too). Each use makes its own MockClock.
    """
    return pytest.mark.parametrize(
        "anyio_backend",
        [pytest.param(_virtual_backend(name), id=name) for name in ("asyncio", "trio")],
    )


def _virtual_backend(name: str) -> object:
    if name == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    return ("asyncio", {"loop_factory": VirtualClockLoop})
