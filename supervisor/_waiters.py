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

    __slots__ = ("_new", "_wait_on", "_wake", "queue")

    def __init__(self) -> None:
        #: waiter -> its priority level (read only outside: a dict's len() and bool())
        self.queue: PriorityQueue[Waiter] = PriorityQueue()
        self._new: Callable[[], Waiter] = not_started
        self._wake: Callable[[Waiter], None] = not_started
        self._wait_on: Callable[[Waiter], Any] = not_started

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
        (``PriorityQueue.victim``): it wakes to *error* of its own level, and the caller may
        queue. False: nobody below *level* waits; the caller is refused.
        """
        queue = self.queue
        victim = queue.victim(level)
        if victim is None:
            return False
        victim_level = queue[victim]
        queue.remove(victim)
        victim.error = error(victim_level)
        self._wake(victim)
        return True

    def fail_all(self, error: Callable[[], SupervisorError]) -> int:
        """Every waiter wakes to an *error* of its own; returns how many there were."""
        waiters = self.queue.drain()
        for waiter in waiters:
            waiter.error = error()
            self._wake(waiter)
        return len(waiters)
