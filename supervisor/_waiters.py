"""
The calls waiting for a dependency's bulkhead slot (issue 17): its priority queue
(``policies.priority.PriorityQueue``: highest level first, FIFO within a level) and the
backend's signals that park a call and wake it (a loop future on asyncio, a parked task on
trio: ``Paths.signals``, attached at start).

Owned by the actor (``Actor._waiters``). It writes the queue and its waiters, nothing else:
the slots are the actor's, which counts them (``_in_flight``, written only by the actor) and
decides when one goes to the next waiter (``Actor._hand_over``). The hot path reads the
queue's truthiness through the actor's own alias of it (``Actor._queue``), a dict's, costing
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from policies.priority import PriorityQueue

from ._errors import not_started

if TYPE_CHECKING:
    from ._errors import SupervisorError
    from ._runtime import Waiter

__all__ = ("Waiters",)


@final
class Waiters:
    """One dependency's calls queued for a slot, each with its priority level."""

    __slots__ = ("_new", "_refusals", "_wait_on", "_wake", "queue")

    def __init__(self) -> None:
        #: waiter -> its priority level (read only outside: a dict's len() and bool())
        self.queue: PriorityQueue[Waiter] = PriorityQueue()
        self._new: Callable[[], Waiter] = not_started
        self._wake: Callable[[Waiter], None] = not_started
        self._wait_on: Callable[[Waiter], Any] = not_started
        # The waiters woken to an error that counts as a refusal once it is the call's: the
        # reason and the level to count it by (``refused``; a call cancelled first: none).
        self._refusals: dict[Waiter, tuple[str, int | None]] = {}

    def attach(
        self,
        signals: tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]],
    ) -> None:
        """The supervisor started: the backend's way to make, wake and wait on a waiter."""
        self._new, self._wake, self._wait_on = signals

    def join(self, level: int) -> Waiter:
        """A place at the end of the queue, among the calls of priority *level*."""
        waiter = self._new()
        self.queue.push(waiter, level)
        return waiter

    def wait(self, waiter: Waiter) -> Any:
        """What the call queued as *waiter* awaits: woken granted, or with an error."""
        return self._wait_on(waiter)

    def leave(self, waiter: Waiter) -> bool:
        """
        *waiter* stops waiting (cancelled, its deadline passed). True when it was granted
        the slot first, then left before it could run: its caller passes the slot on.
        """
        self._refusals.pop(waiter, None)  # (woken to an error, and cancelled first)
        return not self.queue.remove(waiter) and waiter.granted

    def grant_next(self) -> None:
        """A freed slot goes to the next waiter, which wakes: the oldest of the highest
        priority waiting (``PriorityQueue.pop_next``; FIFO when all are equal)."""
        waiter = self.queue.pop_next()
        waiter.granted = True
        self._wake(waiter)

    def displace(self, level: int, error: Callable[[int], SupervisorError]) -> bool:
        """
        The queue is full and a call of priority *level* arrives: the lowest-priority call
        waiting, the newest of its level, gives its place up if it is below *level*
        (``PriorityQueue.victim``): it wakes to *error* of its own level, a refusal for
        ``bulkhead_full`` (:meth:`refused`), and the caller may queue. False: nobody below
        *level* waits; the caller is refused.
        """
        queue = self.queue
        victim = queue.victim(level)
        if victim is None:
            return False
        victim_level = queue[victim]
        queue.remove(victim)
        victim.error = error(victim_level)
        self._refusals[victim] = ("bulkhead_full", victim_level)
        self._wake(victim)
        return True

    def fail_all(self, error: Callable[[], SupervisorError], reason: str | None) -> None:
        """Every waiter wakes to an *error* of its own, a refusal for *reason* (None: one
        that counts nothing, as at shutdown)."""
        for waiter in self.queue.drain():
            waiter.error = error()
            if reason is not None:
                self._refusals[waiter] = (reason, None)
            self._wake(waiter)

    def refused(self, waiter: Waiter) -> tuple[str, int | None] | None:
        """
        *waiter* resumes with its error: the refusal to count now, (reason, level) or None.
        Counted as the call takes its error, not when woken: a call its caller cancelled
        in between ends cancelled, and counts nothing (:meth:`leave`).
        """
        return self._refusals.pop(waiter, None)
