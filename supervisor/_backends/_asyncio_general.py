"""
What the asyncio attempts (``_asyncio.attempt_fast``, both of its ways) call but do not write
inline: the delivery of a cut-off (an attempt's timer fired, or shutdown), the current-task
getter, and the waiters' signals (a loop future per queued call).

On asyncio an attempt is cut off (timeout, deadline, shutdown) by ``task.cancel()`` fired
from the actor's one timer heap (``_timers.py`` says why), and the attempt translates its own
``CancelledError`` back.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from supervisor._timers import Running, cancel_pending

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._errors import SupervisorError

__all__ = ("current_task_getter", "cut_fast", "deliver", "signals")


def deliver(self: Actor, running: Running) -> None:
    """
    Deliver the cut-off of *running* (``Actor.cut``): ``task.cancel()``, unless somebody
    else's cancellation is already on its way to the task: then try again on the next loop
    iteration, as anyio does (see :func:`~supervisor._timers.cancel_pending`). If that foreign
    cancellation ends the attempt first, the attempt was the caller's to cancel: it counts
    nothing and the ``CancelledError`` goes on to whoever asked for it.
    """
    if running.done or running.delivered:
        return
    task = running.task
    assert isinstance(task, asyncio.Task)
    if cancel_pending(task):
        assert self._loop is not None
        self._loop.call_soon(deliver, self, running)
        return
    running.delivered = True
    task.cancel()


def cut_fast(self: Actor, task: asyncio.Task[Any]) -> None:
    """:func:`deliver` for an attempt on the fast path (no Running record): shutdown only."""
    if task not in self._tasks or task in self._cut_tasks:
        return
    if cancel_pending(task):
        assert self._loop is not None
        self._loop.call_soon(cut_fast, self, task)
        return
    self.cut_task(task)
    task.cancel()


@final
class FutureWaiter:
    """
    A call queued for a slot on asyncio (``_runtime.Waiter``), woken by a bare loop future:
    an anyio Event costs three objects and ~800 bytes per queued call.
    """

    __slots__ = ("error", "future", "granted")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False
        self.error: SupervisorError | None = None


def wake(waiter: FutureWaiter) -> None:
    future = waiter.future
    if not future.done():
        future.set_result(None)


def current_task_getter() -> Callable[[Any], asyncio.Task[Any] | None]:
    """``asyncio.current_task(loop)`` without its Python frame on 3.11 (272 ns -> 50 ns)."""
    current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if sys.version_info >= (3, 12) or not isinstance(current_tasks, dict):
        return asyncio.current_task  # C-accelerated from 3.12 on
    return current_tasks.get


def _future_of(waiter: FutureWaiter) -> asyncio.Future[None]:
    return waiter.future


def signals() -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]]:
    """A queued call's wake-up: a future of the running loop, awaited as it is."""
    return functools.partial(FutureWaiter, asyncio.get_running_loop()), wake, _future_of
