"""
A sync callable's calls, each in a worker thread of the dependency's own limiter.

A thread cannot be stopped: an attempt cut off (timeout, cancellation, shutdown) leaves it
running, and its bulkhead slot stays taken until it really ends (guarantee 14). A call
cancelled before its thread started gives its slot back at once, and the function never
runs (issue 16, defect 1). A plain callable that returns an awaitable (``lambda p:
client.complete(p)``) is found to be async: the awaitable is awaited on the loop, and the
dependency is called on the loop from then on (``Actor.learned_async``).

Each sync dependency has its own worker threads (``Actor._limiter``, sized to its slots by
``Actor._derive``). anyio's default limiter is shared by the whole process: 40 calls stuck in
one slow sync dependency made every other one wait for a thread and time out (issue #8,
defect 2). Sized to the slots, and an abandoned thread keeping its slot until it ends, an
admitted call always finds a thread free: waiting for a thread is never charged to its timeout.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.from_thread
import anyio.to_thread

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._timers import Running

__all__ = ("ThreadJob", "discard", "in_thread")

#: What a worker thread returns when the sync callable returned an awaitable.
_AWAITABLE: Final = object()


def discard(awaitable: object) -> None:
    """Close a coroutine nobody will await (no "never awaited" warning, its frame freed)."""
    if inspect.iscoroutine(awaitable):
        awaitable.close()


@final
class ThreadJob:
    """
    A sync callable running in a worker thread. If its attempt is cut off, the thread cannot
    be stopped: the slot stays taken until the thread really ends (guarantee 14).
    """

    __slots__ = ("abandoned", "actor", "finished", "pending", "running", "unclaimed")

    def __init__(self, actor: Actor, running: Running) -> None:
        self.actor = actor
        self.running = running
        self.finished = False
        self.abandoned = False
        self.pending: object = None  # a coroutine the thread returned, until it is awaited
        # Who comes first, the worker thread starting the function or the loop cancelling a
        # call whose thread has not started (waiting for a thread token, or queued for a
        # worker): each side pops, and list.pop is atomic, so exactly one of them wins.
        self.unclaimed = [True]

    def claim(self) -> bool:
        """The loop's side: True when the thread has not started, and now never will."""
        try:
            self.unclaimed.pop()
        except IndexError:
            return False
        return True

    def run(
        self, fn: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, Any]
    ) -> object:
        try:
            self.unclaimed.pop()
        except IndexError:  # its call was cancelled first: the slot is back, nothing runs
            return None
        result: object = None
        try:
            result = fn(*args, **kwargs)
        finally:
            try:
                anyio.from_thread.run_sync(self._ended, result)
            except Exception:  # the event loop is gone: nobody is left to hold the slot for
                discard(result)
        # An awaitable goes back through `pending`, not as the thread's result: trio refuses
        # a worker function that returns a coroutine (it closes it and raises TypeError).
        return _AWAITABLE if self.pending is not None else result

    def _ended(self, result: object) -> None:  # runs in the event-loop thread
        self.finished = True
        if self.abandoned:
            discard(result)  # its caller is gone: nobody will await it
            self.actor.release_slot()
        elif inspect.isawaitable(result):
            self.pending = result


async def in_thread(
    self: Actor, running: Running, args: tuple[object, ...], kwargs: dict[str, Any]
) -> object:
    job = ThreadJob(self, running)
    try:
        result = await anyio.to_thread.run_sync(
            job.run, self.fn, args, kwargs, abandon_on_cancel=True, limiter=self._limiter
        )
    except BaseException:
        if job.claim():  # cancelled before the thread started: no thread holds the slot
            pass
        elif not job.finished:  # the thread runs on: it releases the slot when it ends
            job.abandoned = True
            running.keep_slot = True
        else:  # it ended, but its result will never reach us
            discard(job.pending)
        raise
    if result is not _AWAITABLE:
        return result
    # A plain callable returned an awaitable (`lambda p: client.complete(p)`): the thread
    # only created it. Await it here, inside this attempt's timeout and cut-off, and call
    # the dependency on the loop from now on (issue #8, defect 3).
    awaitable, job.pending = job.pending, None
    self.learned_async()
    return await awaitable  # type: ignore[misc]  # checked by inspect.isawaitable
