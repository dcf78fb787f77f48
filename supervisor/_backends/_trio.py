"""
The trio attempt: one ``trio.CancelScope`` per attempt (its deadline is the attempt's limit;
shutdown cancels it), and a queued call's wake-up as a parked task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, final

from supervisor._admission import admit_slow
from supervisor._call import with_hedging, with_policies
from supervisor._runtime import Paths
from supervisor._timers import Running

from ._threads import in_thread

if TYPE_CHECKING:
    import trio

    from supervisor._actor import Actor
    from supervisor._errors import SupervisorError
    from supervisor._timers import Deadline

__all__ = ("PATHS", "TrioSignal", "TrioTimers", "attempt", "wait", "wake")


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


async def attempt(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> object:
    machine = self._machine
    # trio's cancel scope below costs far more than a handler call: nothing is inlined.
    epoch = self.admit_nowait(machine)
    admitted = None
    now = self.call_start()  # NaN when this call's latency is not sampled
    if not self.take_slot_nowait():  # no free slot, or a gate is down (pause, limits, shutdown)
        epoch = await admit_slow(self, machine, epoch, deadline, args, kwargs)
        if self._settles:  # this call's limits and turns, for settle (set as it returned)
            admitted = self.admitted
        now = self.call_start()
    scope = self._cancel_scope()
    running = Running(scope, 0, epoch)
    if self._attempt_timeout is not None or deadline is not None:
        start = now if now == now else self.clock()
        scope.deadline = self.attempt_limit(running, start, self._attempt_timeout, deadline)
    self._running[running] = None
    if self.watches_slow:
        self.watch_slow(running, now)
    result: object = None
    try:
        with scope:
            if self._is_async:
                if kwargs:
                    result = await self.fn(*args, **kwargs)  # type: ignore[misc]  # checked
                else:  # `**kwargs` would copy the empty dict into a new one
                    result = await self.fn(*args)  # type: ignore[misc]  # checked
            else:
                result = await in_thread(self, running, args, kwargs)
    except BaseException as exc:
        end = self.clock()
        self._end(running)
        try:
            self.ended_with(exc, epoch, now, end, running.slow)
            raise
        finally:
            if not running.keep_slot:  # outcome first, slot second: see _asyncio.attempt_fast
                self.release_slot()
    end = self.clock()
    self._end(running)
    try:
        if scope.cancelled_caught:
            if not running.fired:
                running.fired = running.reason
            raise self._cut_off(running.fired, epoch, now, end, running.seconds, running.slow)
        self.succeeded(epoch, now, end, running.slow)
        if self._settles:
            self.settle(args, kwargs, result, admitted)
    finally:
        if not running.keep_slot:
            self.release_slot()
    return result


def _deliver(self: Actor, running: Running) -> None:
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


def _signals() -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]]:
    return TrioSignal, wake, wait


def _cancel_scope() -> Callable[[], Any]:
    import trio  # the running backend, so already imported

    return trio.CancelScope


PATHS = Paths(
    with_policies=with_policies,
    with_hedging=with_hedging,
    attempt=attempt,
    signals=_signals,
    deliver=_deliver,
    cancel_scope=_cancel_scope,
    timer_loop=TrioTimers,
)
