"""
Admission that waits: what happens when the hot path's one comparison (a free slot, no gate
down) says no.

In order: the supervisor must be running; a pause (a 429's Retry-After) is waited out within
the call's deadline; a shared open verdict refuses; the rate limits give a turn (waited for,
holding no slot and no probe permit); the bulkhead gives a slot, a queue place, or
``BulkheadFull``; and a pause that began while the call queued sends it back to wait again.
Every wait ends when the supervisor leaves. After each wait the call is admitted by the
breaker again (``Actor.admit_nowait``): the breaker may have moved, or been replaced.

The functions here are the actor's own methods (``self`` is the actor), defined here because
they await and the actor does not. They read its state and change it only through its
synchronous handlers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import anyio

from policies.rate_limit import Refusal, reserve_all

from . import _priority
from ._actor import Actor
from ._errors import DEQUEUED, BreakerOpen, SupervisorClosed, SupervisorError

if TYPE_CHECKING:
    from ._rate_limits import RateLimits
    from ._timers import Deadline

__all__ = ("acquire", "admit_slow")

_INF: Final = math.inf
# The actor's handler, called as a function on the rate-limited success path. The actor has
# more attributes than CPython 3.11 keeps in a shared-key instance dict, so `self.method()`
# is looked up unspecialised on every call: it measured ~290 instructions more a call
# (callgrind), and `Actor.take_free_slot(self)` ~180 more.
take_free_slot: Final = Actor.take_free_slot

_IN_PAUSE: Final = "supervisor shut down while the call waited for the dependency's pause"
_IN_RATE_LIMIT: Final = "supervisor shut down while the call waited for its rate-limit turn"


async def acquire(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> int:
    """
    Full admission for a call that does not go through an attempt path (a stream): breaker,
    pause, shared verdict, rate limits, bulkhead. On return the caller holds a slot and must
    end with exactly one of ``succeeded``/``ended_with`` (or ``released``) and then give the
    slot back. Returns the epoch to run in.
    """
    machine = self._machine
    epoch = self.admit_nowait(machine)
    if self.slot_free():
        self.take_slot()
        return epoch
    return await admit_slow(self, epoch, deadline, args, kwargs)


async def admit_slow(
    self: Actor,
    epoch: int,
    deadline: Deadline | None,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
) -> int:
    """
    Admission past the breaker when the hot path's one comparison said no: shutdown, a
    pause, a shared open verdict, the rate limits, then the bulkhead (a free slot, a queue
    place, or ``BulkheadFull``). On return the slot is the caller's; returns the epoch to
    run in.
    """
    if not self.accepting:  # a call coroutine created before close(): see Actor.close
        self.released(epoch)
        raise SupervisorClosed(self._closed_reason)
    gates = self._gates
    while True:
        if self._gated:  # a pause or a shared verdict (one flag: the rate-limited success path)
            if gates.paused_until is not None:
                epoch = await _wait_out_pause(self, epoch, deadline)
            if gates.forced_until is not None:
                _check_forced(self, epoch)
        limits = self._limits
        if limits is None:
            # No turn to settle. The caller reads self.admitted only while a limit settles:
            # not now, unless a reconfigure added one while this call queued (said below).
            if self.take_free_slot():
                return epoch
            epoch = await _take_slot(self, epoch, deadline)
            if not gates.paused():
                if self._settles:
                    self.admitted = None
                return epoch
            # A 429 paused the dependency while this call queued: the slot is not a
            # licence to call a paused dependency. Pass it on and wait the pause out.
            self.release_slot()
            continue
        # The rate limits: a turn in each, all or none. (One limit priced 1 a call is the
        # success path of most rate-limited calls: one step, and no frame more when local.)
        try:
            costs = limits.unit_costs if limits.unit_priced else limits.costs(args, kwargs)
        except BaseException:
            self.released(epoch)
            raise
        clock = self.clock  # (a local: called, not looked up as a method; see take_free_slot)
        now = clock()
        budget = deadline - now if deadline is not None else _INF
        solo = limits.solo
        if solo is not None and take_free_slot(self):
            # One local limit, nothing to settle, a slot taken: a turn due at once is used in
            # this step with that slot and never given back, so it is taken final (no
            # number, no record: policies.rate_limit, rule 9).
            result = solo.reserve(now, costs[0], budget, True)
            if result == 0.0:
                return epoch
            # Not due yet (or refused): the slot goes back in this step, and the call waits
            # like any other; its final turn gives nothing back if it never goes: safe,
            # rule 7.
            self.give_back_slot()
            charged = costs
            turns = [solo.last_turn]
        elif limits.group is not None and take_free_slot(self):
            # Several local limits, the same case: all or none, and final in each.
            charged = []
            result = reserve_all(limits.group, now, costs, budget, charged, True)
            if result == 0.0:
                return epoch
            self.give_back_slot()
            turns = limits.turns()
        elif limits.single is not None:
            single = limits.single
            result, charged = single.reserve(now, costs[0], budget), costs
            # The turns taken, named by any give-back (rule 7), read before anything else
            # can reserve.
            turns = [single.last_turn]
        else:
            result, charged = limits.reserve(now, costs, budget)
            turns = limits.turns()
        if isinstance(result, Refusal):
            self.released(epoch)
            if result.never:
                raise limits.never_error(result, costs)
            raise limits.refused(result.retry_after, _priority.current())
        if result > 0.0:
            epoch, retake = await _wait_for_turn(
                self, epoch, deadline, now + result, charged, turns, limits
            )
            if retake:  # the turn fell due in a pause: given back, take a fresh one
                continue
        if take_free_slot(self):  # nothing awaited since the pause was checked: it is ours
            if self._settles:  # this call's turns, read by the caller as this returns
                self.admitted = (limits, turns)
            return epoch
        try:
            epoch = await _take_slot(self, epoch, deadline)
        except BaseException:
            # Refused by the bulkhead, cancelled or timed out in its queue: the call never
            # went, so its turn goes back to the limits.
            limits.refund(self.clock(), charged, turns)
            raise
        if not gates.paused():
            if self._settles:
                self.admitted = (limits, turns)
            return epoch
        self.release_slot()  # paused while it queued: see above; a fresh turn after
        limits.refund(self.clock(), charged, turns)


def _check_forced(self: Actor, epoch: int) -> None:
    """
    Admission, shared-verdict part: the replicas' verdict refuses the call while it holds
    (``Gates.check_forced`` decides and counts); the call never runs, so the probe permit
    it was admitted with in *epoch* goes back (``Actor.released``).
    """
    try:
        self._gates.check_forced()
    except BreakerOpen:
        self.released(epoch)
        raise


async def _take_slot(self: Actor, epoch: int, deadline: Deadline | None) -> int:
    """
    Admission, bulkhead part: a free slot, a place in the queue, or BulkheadFull. The
    caller's priority is read here, where it can matter, and only here: a full queue gives
    a lower-priority call's place to a higher one (``Waiters.displace``).
    """
    if self.take_free_slot():
        return epoch
    level = _priority.current()
    waiters = self._waiters
    if len(waiters.queue) >= self._max_queued and not waiters.displace(level, self._bulkhead_full):
        raise self._reject_bulkhead(epoch, level)
    return await _wait_for_slot(self, epoch, deadline, level)


async def _wait_out_pause(self: Actor, epoch: int, deadline: Deadline | None) -> int:
    """
    The dependency is paused (a rate-limited answer said when to come back): wait for the
    pause to end when it ends within the call's deadline, holding no slot and no probe
    permit; else ``RateLimited`` at once. Returns the epoch to run in.
    """
    gates = self._gates
    now = self.clock()
    until = gates.paused_until
    waited = False
    while until is not None and now < until:
        if deadline is not None and until > deadline:
            if not waited:
                self.released(epoch)
            raise gates.reject_paused(until - now)
        if not waited:
            self.released(epoch)  # hold no probe permit while waiting
            waited = True
        with anyio.CancelScope(deadline=until):  # the loop's clock: see _wait_for_turn
            await self.closing.wait()
        if not self.accepting:
            raise SupervisorClosed(_IN_PAUSE)
        now = self.clock()
        until = gates.paused_until  # a later 429 may have extended it
    if until is not None:
        gates.end_pause()
    if not waited:
        return epoch
    if deadline is not None and now >= deadline:  # the loop resumed this call too late
        raise self.past_deadline(deadline)
    # Admitted again: the breaker may have moved meanwhile.
    return self.admit_nowait(self._machine)


async def _wait_for_turn(
    self: Actor,
    epoch: int,
    deadline: Deadline | None,
    due: float,
    charged: list[float],
    turns: list[Any],
    limits: RateLimits,
) -> tuple[int, bool]:
    """
    The turn is taken and falls *due* then on the loop's clock (within the limits'
    ``max_wait`` and the call's deadline): wait for it holding no slot and no probe permit.
    FIFO: a turn is a commitment (policies.rate_limit, rule 1), so a large call is never
    starved by small ones. The wait ends at the instant the turn was priced for (not that
    long after this task next ran); when the loop runs late, calls whose turns have all
    fallen due start in the order it resumes them, and one resumed past its deadline does
    not start (``Actor.past_deadline``). Returns the epoch to run in (admitted by the
    breaker again), and whether the turn fell due in a pause: then it was given back, and
    the caller takes a fresh one once the pause is over (going at the pause's end together
    with every other turn that fell due in it would be a burst the limits never allowed,
    which a provider's quota answers with 429s).
    """
    self.released(epoch)  # hold no probe permit while waiting for the turn
    try:
        with anyio.CancelScope(deadline=due):
            await self.closing.wait()
        if not self.accepting:
            raise SupervisorClosed(_IN_RATE_LIMIT)
        now = self.clock()
        if deadline is not None and now >= deadline:  # the loop resumed this call too late
            raise self.past_deadline(deadline)  # (its turn goes back: below)
        machine = self._machine  # admitted again: the breaker may have moved meanwhile
        epoch = self.admit_nowait(machine)
        gates = self._gates
        if gates.paused():
            limits.refund(now, charged, turns)
            return epoch, True
        if gates.forced_until is not None:
            _check_forced(self, epoch)
    except BaseException:
        limits.refund(self.clock(), charged, turns)
        raise
    return epoch, False


async def _wait_for_slot(self: Actor, epoch: int, deadline: Deadline | None, level: int) -> int:
    """
    Queue for a slot at priority *level* (highest first, FIFO within a level); on return
    the slot is ours. Returns the epoch to run in. A higher-priority call may take the
    place: then ``waiter.error`` is the ``BulkheadFull`` raised here.
    """
    waiters = self._waiters
    waiter = waiters.join(level)
    try:
        if deadline is None:
            await waiters.wait(waiter)
        else:
            with anyio.CancelScope(deadline=deadline):
                await waiters.wait(waiter)
    except BaseException:
        self._leave_queue(waiter, epoch)
        raise
    if waiter.error is not None:  # (a shared verdict moves no epoch: the permit goes back)
        self.refused_in_queue(waiter, epoch)
        raise waiter.error
    if not waiter.granted or (deadline is not None and self.clock() >= deadline):
        # The total deadline passed in the queue, or before the loop resumed the call that
        # was granted a slot in time: either way too late to start (the slot is passed on).
        self._leave_queue(waiter, epoch)
        assert deadline is not None
        raise self.past_deadline(deadline)
    if not self.accepting:
        # Handed the slot in the loop step the supervisor left in: a call must not run
        # the dependency after exit. Give the slot (and any probe permit) back.
        self.released(epoch)
        self.release_slot()
        raise SupervisorClosed(DEQUEUED)
    current = self._machine
    if current.epoch != epoch:
        # The breaker moved while the slot was on its way to us (say, a probe closed it,
        # or a crash restart): ask again rather than run as a late call.
        try:
            return self.admit_nowait(current)
        except SupervisorError:
            self.release_slot()
            raise
    return epoch
