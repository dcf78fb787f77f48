"""
The asyncio fast path's **template**: an attempt with no timer, no thread and no policy loop,
written plainly, calling the actor's ``@inline`` handlers.

``make generate`` (``_generate.py``) writes ``_generated_asyncio.py`` from this module, with the
handlers' bodies inlined: that is what asyncio runs, because a method call costs about what
the protected call does (calling the handlers measured 8.8x -> 12.0x a bare ``await``), and the
hand-inlined copy it replaces drifted from the handlers twice. ``RINGFENCE_INLINE=0`` runs this
template instead (CI runs the runtime tests once that way). Edit this file and the handlers,
never the generated one; a test fails when the generated file is stale.

The fast path registers nothing: it counts itself in ``_fast``, and leaving the supervisor finds
it by walking the tasks' await chains (``_asyncio_general.cut_fast``), which know its code
object (``FAST_ATTEMPTS``). Anything else (a timer, a thread) goes to ``_asyncio_general``.
"""

from __future__ import annotations

import asyncio
from sys import _getframe
from typing import TYPE_CHECKING, Any

from supervisor._admission import admit_slow
from supervisor._call import with_policies
from supervisor._runtime import Paths

from ._asyncio_general import (
    FAST_ATTEMPTS,
    attempt_general,
    current_task_getter,
    cut_fast,
    deliver,
    signals,
)

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._timers import Deadline

__all__ = ("PATHS", "attempt_fast")


async def attempt_fast(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> object:
    """The hot path: a call with no timer, no thread and no policy loop, on asyncio."""
    machine = self._machine
    # admission: breaker, then bulkhead
    epoch = self.admit_nowait(machine)
    if self.slot_free():
        self.take_slot()
        now = self.call_start()  # NaN when this call's latency is not sampled
    else:  # no free slot, or a gate is down (pause, rate limits, shutdown)
        epoch = await admit_slow(self, machine, epoch, deadline, args, kwargs)
        # Admitted again after a wait: by the breaker in force now (a reconfigure or a
        # crash restart may have replaced it), to which this call reports.
        machine = self._machine
        now = self.call_start()
        if self._settles:
            # A settle trues up the turns admit_slow just gave this call (self.admitted, set
            # as it returned): the general path takes them.
            current = self._task_of(self._loop)
            return await attempt_general(
                self, args, kwargs, deadline, now, epoch, current, self.admitted
            )
    if deadline is not None or not self._plain:  # pragma: no branch
        # Timers or threads: the general path.
        task = self._task_of(self._loop)
        return await attempt_general(self, args, kwargs, deadline, now, epoch, task)
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
                raise self._cut_off(cut[0], epoch, now, end, 0.0) from None
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
    attempt=attempt_fast,
    signals=signals,
    deliver=deliver,
    task_of=current_task_getter,
    cut_fast=cut_fast,
)
