"""
Cheap per-attempt cancellation on asyncio: one loop timer per dependency, not one per call.

An anyio ``CancelScope`` costs about 4 µs on asyncio and ``asyncio.timeout`` 2-4.5 µs, against
~0.1 µs for the call we protect, and every call needs *some* way to be cut off (attempt
timeout, total deadline, supervisor shutdown). So on asyncio each running attempt is a
:class:`Running` record holding its task; cutting it off is ``task.cancel()`` plus a flag, and
the attempt translates its own ``CancelledError`` back, the way ``asyncio.timeout`` does (it
counts ``Task.cancelling()`` so a cancellation from anyone else still propagates). A cut-off is
never delivered on top of somebody else's pending cancellation (:func:`cancel_pending`): it
waits for the next loop iteration, so cancellations from anyio scopes, ``asyncio.timeout``,
task groups and the user's own ``task.cancel()`` keep their identity.

Deadlines live in a heap shared by the dependency's attempts, with one ``loop.call_at`` handle
for the earliest. Finished attempts are removed lazily; the heap is rebuilt when stale entries
outnumber live ones, so its size stays O(running attempts).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Final, Protocol, final

__all__ = (
    "Running",
    "Deadline",
    "DeadlineHeap",
    "CLOSED",
    "TIMEOUT",
    "DEADLINE",
    "cancel_pending",
)

#: Why a running attempt was cut off.
CLOSED: Final = 1  # the supervisor left `async with`
TIMEOUT: Final = 2  # Timeout.attempt
DEADLINE: Final = 3  # Timeout.total


@final
class Deadline(float):
    """
    A call's total deadline on the loop clock, carrying the ``Timeout.total`` it was made from.
    Being a float, it is compared and subtracted as the deadline always was; the total rides
    along so that the errors of a call cut off by it name the limit the call started with,
    whatever ``reconfigure`` installs meanwhile (issue 16, defect 2: the old timer asserted on
    the new policy). Made once per call that has a total, by :meth:`of`.
    """

    __slots__ = ("total",)
    total: float

    @classmethod
    def of(cls, now: float, total: float) -> Deadline:
        deadline = cls(now + total)
        deadline.total = total
        return deadline


@final
class Running:
    """One running attempt. Created and touched only by its dependency's actor code."""

    __slots__ = (
        "base",
        "delivered",
        "done",
        "epoch",
        "fired",
        "keep_slot",
        "reason",
        "seconds",
        "slow",
        "task",
    )

    def __init__(self, task: object, base: int, epoch: int) -> None:
        self.task = task  # asyncio.Task, or trio.CancelScope on trio
        self.base = base  # task.cancelling() when the attempt started (asyncio)
        self.epoch = epoch  # the breaker epoch the attempt was admitted in
        self.fired = 0  # 0, or CLOSED / TIMEOUT / DEADLINE once cut off
        self.delivered = False  # our task.cancel() was made (asyncio): ours to uncancel()
        self.reason = TIMEOUT  # what the deadline, if it fires, means
        self.seconds = 0.0  # its limit: Timeout.attempt, or .total when the deadline is first
        self.done = False
        self.keep_slot = False  # a sync callable's abandoned thread still holds the slot
        self.slow = False  # counted slow while running (Breaker.slow_call): not again at its end


def cancel_pending(task: asyncio.Task[object]) -> bool:
    """
    True when *task* already has a cancellation on its way that it has not seen yet.

    Cutting an attempt off then would do harm: a second ``task.cancel()`` while the first is
    pending folds both into one ``CancelledError`` and, when the task is not parked on a
    future, replaces the first one's message with ours. anyio recognises its own cancellation
    by that message ("Cancelled via cancel scope ..."), so a caller's ``move_on_after`` falling
    due in the same loop iteration as our timeout would no longer catch its own cancellation
    and a bare ``CancelledError`` would escape the caller's scope (issue #8, defect 1).
    anyio's ``CancelScope._deliver_cancellation`` makes exactly this test before it cancels,
    and retries on the next iteration; so do we (``_backends._asyncio_general.deliver``).
    """
    # asyncio's own task fields, as anyio reads them (C and Python tasks alike).
    if task._must_cancel:  # type: ignore[attr-defined]  # noqa: SLF001
        return True
    waiter = task._fut_waiter  # type: ignore[attr-defined]  # noqa: SLF001
    return waiter is not None and bool(waiter.done())


class TimerLoop(Protocol):
    """What a :class:`DeadlineHeap` needs of its loop: an asyncio loop, or trio's stand-in
    (``_backends._trio_general.TrioTimers``)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


@final
class DeadlineHeap:
    """
    Deadlines of running attempts on one loop, fired by a single timer: the attempts' cut-off
    on asyncio; on both backends, the moment a call becomes slow (``Breaker.slow_call``).
    """

    __slots__ = ("_at", "_fire", "_handle", "_heap", "_loop", "_seq")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | TimerLoop, fire: Callable[[Running, int], None]
    ) -> None:
        self._heap: list[tuple[float, int, Running]] = []
        self._seq = 0
        self._handle: TimerHandle | None = None
        self._at = float("inf")
        self._loop = loop
        self._fire = fire

    def push(self, deadline: float, running: Running, live: int) -> None:
        """Watch *running* until *deadline*; *live* is how many attempts are running now."""
        self._seq += 1
        heap = self._heap
        if len(heap) > 2 * live + 64:
            # Mostly finished attempts whose deadlines lie ahead: drop them (amortised O(1)).
            heap = [entry for entry in heap if not entry[2].done]
            heapq.heapify(heap)
            self._heap = heap
        heapq.heappush(heap, (deadline, self._seq, running))
        if deadline < self._at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self._at = float("inf")
        heap = self._heap
        now = self._loop.time()
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, running = heapq.heappop(heap)
            if not running.done and not running.fired:
                self._fire(running, running.reason)
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()
