"""
trio's general pieces: a queued call's wake-up as a parked task, the delivery of a cut-off (its
scope cancelled), and timers for slow-call detection. The attempt itself is ``_trio`` (the
template) and ``_generated_trio`` (its handlers inlined, what trio runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, final

if TYPE_CHECKING:
    import trio

    from supervisor._actor import Actor
    from supervisor._errors import SupervisorError
    from supervisor._timers import Running

__all__ = ("TrioSignal", "TrioTimers", "cancel_scope", "deliver", "signals", "wait", "wake")


@final
class TrioSignal:
    """
    A call queued for a slot on trio (``_runtime.Waiter``): the task parked with
    ``wait_task_rescheduled``, the signal itself as its abort function. A ``trio.Event`` is
    a set per event and a closure per wait: ~400 bytes more per queued call.
    """

    __slots__ = ("error", "granted", "is_set", "task")

    def __init__(self) -> None:
        self.is_set = False
        self.task: Any = None  # the parked task, until woken or its wait is aborted
        self.granted = False
        self.error: SupervisorError | None = None

    def __call__(self, raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        """trio's abort callback: a cancelled wait leaves at once; a later wake is a no-op."""
        import trio

        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


def wake(signal: TrioSignal) -> None:
    signal.is_set = True
    task, signal.task = signal.task, None
    if task is not None:
        import trio

        trio.lowlevel.reschedule(task)


async def wait(signal: TrioSignal) -> None:
    import trio

    if signal.is_set:  # pragma: no cover  # a waiter parks in the step that queues it
        await trio.lowlevel.checkpoint()  # woken before it parked: parking would hang
        return
    signal.task = trio.lowlevel.current_task()
    await trio.lowlevel.wait_task_rescheduled(signal)


def deliver(self: Actor, running: Running) -> None:
    """Deliver the cut-off of *running* (``Actor.cut``): cancel its scope."""
    running.task.cancel()  # type: ignore[attr-defined]  # a trio.CancelScope


@final
class TrioTimers:
    """
    ``loop.call_at`` and ``loop.time`` on trio, for a ``_timers.DeadlineHeap`` (its one
    timer: the moment the next running call becomes slow). A timer is a system task asleep
    in a cancel scope whose deadline is the time: trio's way to wait for a time.
    """

    __slots__ = ()

    def time(self) -> float:
        import trio

        return trio.current_time()

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        import trio

        timer = _Timer(trio.CancelScope(deadline=when))
        trio.lowlevel.spawn_system_task(_fire_at, timer, callback, name="ringfence timer")
        return timer


@final
class _Timer:
    __slots__ = ("cancelled", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.scope.cancel()


async def _fire_at(timer: _Timer, callback: Callable[[], object]) -> None:
    import trio

    with timer.scope:
        await trio.sleep_forever()
    if not timer.cancelled:
        callback()


def signals() -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]]:
    return TrioSignal, wake, wait


def cancel_scope() -> Callable[[], Any]:
    import trio  # the running backend, so already imported

    return trio.CancelScope
