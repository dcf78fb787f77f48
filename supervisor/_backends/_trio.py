"""
The trio attempt's **template**: one ``trio.CancelScope`` per attempt (its deadline is the
attempt's limit; shutdown cancels it), written plainly, calling the actor's ``@inline``
handlers. ``make generate`` writes ``_generated_trio.py`` from it with their bodies inlined:
what trio runs (a handler call costs ~1 % of a trio call, and the frames add up to the
difference between ringfence and a bare scope); ``RINGFENCE_INLINE=0`` runs this template.
Edit this file and the handlers, never the generated one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supervisor._admission import admit_slow
from supervisor._call import with_hedging, with_policies
from supervisor._runtime import Paths

from ._threads import in_thread
from ._trio_general import TrioTimers, cancel_scope, deliver, signals

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._timers import Deadline

__all__ = ("PATHS", "attempt")


async def attempt(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> object:
    """Every trio attempt: admission, one cancel scope, the outcome, the slot back."""
    machine = self._machine
    # admission: breaker, then bulkhead
    epoch = self.admit_nowait(machine)
    admitted = None
    if self.slot_free():
        self.take_slot()
    else:  # no free slot, or a gate is down (pause, rate limits, shutdown)
        epoch = await admit_slow(self, epoch, deadline, args, kwargs)
        if self._settles:  # this call's limits and turns, for settle (set as it returned)
            admitted = self.admitted
    now = self.call_start()  # NaN when this call's latency is not sampled
    scope = self._cancel_scope()
    running = self._started(scope, 0, epoch)
    if self._attempt_timeout is not None or deadline is not None:
        start = now if now == now else self.clock()
        attempt_timeout = self._attempt_timeout
        limit = self.attempt_limit(running, start, attempt_timeout, deadline)
        scope.deadline = limit
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
    self._end(running)
    try:
        if scope.cancelled_caught:
            if not running.fired:
                running.fired = running.reason
            end = self.clock()
            raise self.cut_off(running.fired, epoch, now, end, running.seconds, running.slow)
        end = self.call_end(now)
        slow = running.slow
        self.succeeded(epoch, now, end, slow)
        if self._settles:
            self.settle(args, kwargs, result, admitted)
    finally:
        if not running.keep_slot:
            self.release_slot()
    return result


PATHS = Paths(
    with_policies=with_policies,
    with_hedging=with_hedging,
    attempt=attempt,
    signals=signals,
    deliver=deliver,
    cancel_scope=cancel_scope,
    timer_loop=TrioTimers,
)
