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

Deadlines live in a :class:`DeadlineHeap` shared by the dependency's attempts (a FIFO for the
deadlines that come in order, as a fixed attempt timeout's do, and a heap for the rest), with
one ``loop.call_at`` handle for the earliest. Finished attempts are removed lazily; a lane is
rebuilt when stale entries outnumber live ones, so its size stays O(running attempts).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
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
    """
    One running attempt. Created and touched only by its dependency's actor code.

    No ``__init__``: on CPython 3.11 calling one costs more than the rest of the record
    (``Running(...)`` measured ~2,350 instructions, ``Running()`` and ten slot stores
    ~1,430: issue 18). One handler makes them, for both backends' attempts, and sets
    every field at once (``Actor._started``, inlined into the generated attempts), to these
    values:

    * ``task``: the ``asyncio.Task`` (on trio, the attempt's ``trio.CancelScope``);
    * ``base``: ``task.cancelling()`` when the attempt started (asyncio; 0 on trio);
    * ``epoch``: the breaker epoch the attempt was admitted in;
    * ``fired``: 0, or CLOSED / TIMEOUT / DEADLINE once cut off;
    * ``delivered``: False; True once our ``task.cancel()`` was made (asyncio): ours to
      ``uncancel()``;
    * ``reason``: TIMEOUT: what its deadline, if it fires, means (``Actor.attempt_limit``
      makes it DEADLINE when the call's deadline comes first);
    * ``seconds``: 0.0: its limit, ``Timeout.attempt`` or ``.total`` (``attempt_limit``);
    * ``done``: False until it ends (``Actor._end``);
    * ``keep_slot``: False; True while a sync callable's abandoned thread holds the slot;
    * ``slow``: False; True once counted slow while running (``Breaker.slow_call``): not
      again at its end.
    """

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
    task: object
    base: int
    epoch: int
    fired: int
    delivered: bool
    reason: int
    seconds: float
    done: bool
    keep_slot: bool
    slow: bool


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

    Two lanes, each in deadline order, the timer armed for the earlier of their heads. A
    deadline no earlier than the last one queued goes to a FIFO (``deque.append``): with one
    fixed limit (every attempt of a dependency timed by the same ``Timeout.attempt``, or
    watched for the same ``slow_call``) deadlines come in start order, and that is every
    push. Any other (a call's deadline coming first, a limit a reconfigure shortened) goes to
    a heap. Either way each attempt fires at its own deadline. Finished attempts are removed
    lazily, from both; a lane is rebuilt when stale entries outnumber live ones, so its size
    stays O(running attempts).
    """

    __slots__ = ("_at", "_fifo", "_fire", "_handle", "_heap", "_last", "_loop", "_seq")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | TimerLoop, fire: Callable[[Running, int], None]
    ) -> None:
        self._fifo: deque[tuple[float, Running]] = deque()
        # The FIFO's latest deadline: a push no earlier keeps it in order (-inf: run dry).
        self._last = -math.inf
        self._heap: list[tuple[float, int, Running]] = []
        self._seq = 0
        self._handle: TimerHandle | None = None
        self._at = math.inf
        self._loop = loop
        self._fire = fire

    def push(self, deadline: float, running: Running, live: int) -> None:
        """Watch *running* until *deadline*; *live* is how many attempts are running now."""
        if deadline >= self._last:  # in order: the FIFO
            self._last = deadline
            fifo = self._fifo
            if len(fifo) > 2 * live + 64:
                # Mostly finished attempts whose deadlines lie ahead: drop them (amortised O(1)).
                fifo = self._fifo = deque(entry for entry in fifo if not entry[1].done)
            fifo.append((deadline, running))
        else:
            self._seq += 1
            heap = self._heap
            if len(heap) > 2 * live + 64:  # (as the FIFO above)
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
        self._at = math.inf
        now = self._loop.time()
        fifo, heap, fire = self._fifo, self._heap, self._fire
        while fifo and (fifo[0][1].done or fifo[0][0] <= now):
            _, running = fifo.popleft()
            if not running.done and not running.fired:
                fire(running, running.reason)
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, running = heapq.heappop(heap)
            if not running.done and not running.fired:
                fire(running, running.reason)
        if not fifo:
            self._last = -math.inf
        heads = [lane[0][0] for lane in (fifo, heap) if lane]
        if heads:
            self._arm(min(heads))

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = math.inf  # (nothing armed: a later push arms again)
        self._fifo.clear()
        self._last = -math.inf
        self._heap.clear()
