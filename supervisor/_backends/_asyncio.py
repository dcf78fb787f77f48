"""
The asyncio attempt's **template**: admission, the call and its outcome, written plainly,
calling the actor's ``@inline`` handlers.

``make generate`` (``_generate.py``) writes ``_generated_asyncio.py`` from this module, with the
handlers' bodies inlined: that is what asyncio runs, because a method call costs about what
the protected call does (calling the handlers measured 8.8x -> 12.0x a bare ``await``), and the
hand-inlined copy it replaces drifted from the handlers twice. ``RINGFENCE_INLINE=0`` runs this
template instead (CI runs the runtime tests once that way). Edit this file and the handlers,
never the generated one; a test fails when the generated file is stale.

An attempt takes one of two ways, both written here, in one coroutine (a coroutine layer costs
about what the protected call does, and a timed attempt through a second one cost a quarter of
the full stack, issue 18):

* the fast way, an async callable with no timer and nothing else to watch: it registers
  nothing, only counts itself in ``_fast``; leaving the supervisor finds it by walking the
  tasks' await chains (``_asyncio_general.cut_fast``), which know its code object
  (``FAST_ATTEMPTS``) and tell it from the general way by its unbound ``running``;
* the general way, a ``Running`` record (``_timers.py``) for the rest: an attempt timeout or
  a total deadline (a timer in the actor's heap), a sync callable's thread, a slow-call
  watch, an adaptive limit's sample, or a rate limit to settle. The ``FAST_PATH = False``
  switch (``_actor.py``) sends every attempt this way, for tests that compare the two.
"""

from __future__ import annotations

import asyncio
from sys import _getframe
from typing import TYPE_CHECKING, Any

from supervisor._admission import admit_slow
from supervisor._call import with_hedging, with_policies
from supervisor._runtime import Paths

from ._asyncio_general import FAST_ATTEMPTS, current_task_getter, cut_fast, deliver, signals
from ._threads import in_thread

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._timers import Deadline

__all__ = ("PATHS", "attempt_fast")


async def attempt_fast(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> object:
    """One attempt on asyncio: admission, the call, its outcome (see the module's docstring)."""
    machine = self._machine
    # admission: breaker, then bulkhead
    epoch = self.admit_nowait(machine)
    if self.slot_free():
        self.take_slot()
        now = self.call_start()  # NaN when this call's latency is not sampled
    else:  # no free slot, or a gate is down (pause, rate limits, shutdown)
        epoch = await admit_slow(self, epoch, deadline, args, kwargs)
        # Admitted again after a wait: by the breaker in force now (a reconfigure or a
        # crash restart may have replaced it), to which this call reports.
        machine = self._machine
        now = self.call_start()
    if deadline is not None or not self._plain:  # pragma: no branch
        # A timer (attempt timeout, total deadline), a thread, a slow-call watch, an
        # adaptive limit's sample, or a limit to settle: the attempt is a Running record,
        # which its timers and shutdown cut off (``_timers.py``). Written here, not in a
        # coroutine of its own: one frame less.
        task: asyncio.Task[Any] = self._task_of(self._loop)  # type: ignore[assignment]
        # A limit settles only on calls admit_slow admitted (a limit closes the gate), just
        # now, with no await since: its turns are still self.admitted.
        admitted = self.admitted if self._settles else None
        # Named `running`: bound, it tells the shutdown walk this frame is on the general way
        # (``_asyncio_general._fast_frame_of``; a test fails if the walk takes it for fast).
        base = task.cancelling()
        running = self._started(task, base, epoch)
        attempt_timeout = self._attempt_timeout
        if deadline is not None or attempt_timeout is not None:
            start = now if now == now else self.clock()  # (NaN: the latency is not sampled)
            limit = self.attempt_limit(running, start, attempt_timeout, deadline)
            self._timers.push(limit, running, len(self._running))  # type: ignore[union-attr]
        if self.watches_slow:
            self.watch_slow(running, now)
        try:
            if not self._is_async:
                result = await in_thread(self, running, args, kwargs)
            elif kwargs:
                result = await self.fn(*args, **kwargs)  # type: ignore[misc]  # checked async
            else:  # `**kwargs` would copy the empty dict into a new one
                result = await self.fn(*args)  # type: ignore[misc]  # checked async
        except BaseException as exc:
            end = self.clock()
            self._end(running)
            try:
                if (
                    running.delivered
                    and task.uncancel() <= running.base
                    and isinstance(exc, asyncio.CancelledError)
                ):
                    raise self.cut_off(
                        running.fired, epoch, now, end, running.seconds, running.slow
                    ) from None
                self.ended_with(exc, epoch, now, end, running.slow)
                raise
            finally:
                if not running.keep_slot:  # outcome first, slot second: see below
                    self.release_slot()
        # NaN when *now* is (not sampled): nothing reads it then, slow calls and an adaptive
        # limit time every attempt (a limit made adaptive during this one takes no sample).
        end = self.call_end(now)
        self._end(running)
        if running.delivered:  # the dependency swallowed our cancellation and answered anyway
            task.uncancel()
        slow = running.slow
        try:
            self.succeeded(epoch, now, end, slow)
            if admitted is not None:
                self.settle(args, kwargs, result, admitted)
        finally:
            self.release_slot()
        return result
    # Nothing is registered: shutdown finds this frame by walking the tasks (cut_fast) and
    # looks for as many as fast_started counts.
    self.fast_started()
    try:
        if kwargs:
            result = await self.fn(*args, **kwargs)  # type: ignore[misc]  # checked async
        else:  # `**kwargs` would copy the empty dict into a new one
            result = await self.fn(*args)  # type: ignore[misc]  # checked async
    except BaseException as exc:
        end = self.clock()
        self.fast_ended()
        # (why, task, its cancelling() before the cut) if shutdown cut this attempt off
        cut = self.cut_of(_getframe()) if self._cut_frames else None
        try:
            if (
                cut is not None
                and cut[1].uncancel() <= cut[2]
                and isinstance(exc, asyncio.CancelledError)
            ):
                raise self.cut_off(cut[0], epoch, now, end, 0.0) from None
            self.ended_with(exc, epoch, now, end)
            raise
        finally:
            # The outcome first, the slot second: if the outcome opens the breaker, the
            # queue is failed before the slot could pass to a waiter (guarantee 10).
            self.release_slot()
    end = self.call_end(now)
    self.fast_ended()
    if self._cut_frames:
        cut = self.cut_of(_getframe())
        if cut is not None:  # the dependency swallowed our cancellation and answered anyway
            cut[1].uncancel()
    try:
        self.record_success(machine, epoch, now, end)
    finally:
        self.release_slot()
    return result


FAST_ATTEMPTS.add(attempt_fast.__code__)

PATHS = Paths(
    with_policies=with_policies,
    with_hedging=with_hedging,
    attempt=attempt_fast,
    signals=signals,
    deliver=deliver,
    task_of=current_task_getter,
    cut_fast=cut_fast,
)
