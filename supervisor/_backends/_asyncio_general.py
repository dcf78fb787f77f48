"""
What the asyncio attempts (``_asyncio.attempt_fast``, both of its ways) call but do not write
inline: the delivery of a cut-off (an attempt's timer fired, or shutdown), the current-task
getter, the waiters' signals (a loop future per queued call), and the shutdown walk that finds
the fast way's attempts, which register nothing (:func:`cut_fast`).

On asyncio an attempt is cut off (timeout, deadline, shutdown) by ``task.cancel()`` fired
from the actor's one timer heap (``_timers.py`` says why), and the attempt translates its own
``CancelledError`` back.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, final

from supervisor._admission import admit_slow
from supervisor._timers import Running, cancel_pending

if TYPE_CHECKING:
    from supervisor._actor import Actor
    from supervisor._errors import SupervisorError

__all__ = (
    "FAST_ATTEMPTS",
    "current_task_getter",
    "cut_fast",
    "deliver",
    "signals",
)

#: The fast attempt's code objects (the template's, the generated copy's): what the shutdown
#: walk (:func:`cut_fast`) looks for in the tasks' await chains.
FAST_ATTEMPTS: set[types.CodeType] = set()


def deliver(self: Actor, running: Running) -> None:
    """
    Deliver the cut-off of *running* (``Actor.cut``): ``task.cancel()``, unless somebody
    else's cancellation is already on its way to the task: then try again on the next loop
    iteration, as anyio does (see :func:`~supervisor._timers.cancel_pending`). If that foreign
    cancellation ends the attempt first, the attempt was the caller's to cancel: it counts
    nothing and the ``CancelledError`` goes on to whoever asked for it.
    """
    if running.done or running.delivered:
        return
    task = running.task
    assert isinstance(task, asyncio.Task)
    if cancel_pending(task):
        assert self._loop is not None
        self._loop.call_soon(deliver, self, running)
        return
    running.delivered = True
    task.cancel()


def cut_fast(self: Actor) -> None:
    """
    Shutdown: cut off every fast-path attempt of *self* (``Actor.close``, when ``_fast`` says
    some run). They are registered nowhere, to cost nothing per call: they are found as
    asyncio's own task dumps find coroutines (``asyncio.graph``, 3.14), by walking each task's
    await chain (:func:`_chain`), and every task is walked, so an attempt run by another task
    (``wait_for`` on 3.11, ``shield``, ``gather``, task groups) is found in that task. The walk
    must find exactly ``_fast`` attempts; if an awaitable it cannot see through hides some, the
    garbage collector finds them (:func:`_strays`). One cut per task: its innermost attempt
    (an attempt re-entering the dependency from inside another gets the cancellation first).
    """
    assert self._loop is not None
    attempts = dict(_attempts(self, self._loop))
    if len(attempts) < self._fast:
        attempts.update(_strays(self, self._loop, attempts))
    # Each task's attempts come outermost first: the last one of a task stays.
    innermost = {task: frame for frame, task in attempts.items()}
    for task, frame in innermost.items():
        _cut_frame(self, task, frame)


def _cut_frame(self: Actor, task: asyncio.Task[Any], frame: types.FrameType) -> None:
    """:func:`deliver` for the fast attempt running in *frame* in *task* (no Running record)."""
    if frame in self._cut_frames:
        return
    if cancel_pending(task):  # somebody else's cancellation first: see deliver
        assert self._loop is not None
        self._loop.call_soon(_cut_again, self, task, frame)
        return
    self.cut_frame(frame, task)
    task.cancel()


def _cut_again(self: Actor, task: asyncio.Task[Any], frame: types.FrameType) -> None:
    """
    :func:`_cut_frame` again, next iteration: if *task* still runs an attempt of *self* (its
    chain shows one), or the attempt in *frame* still runs where the walk cannot see (one the
    garbage collector found, :func:`_strays`).
    """
    chain = _chain(task.get_coro())
    attempts = [link for link, awaited in chain if _is_attempt(self, link, awaited)]
    if attempts:
        _cut_frame(self, task, attempts[-1].cr_frame)  # type: ignore[attr-defined]
    elif any(coro.cr_frame is frame for coro in _tracked_attempts(self)):
        _cut_frame(self, task, frame)


def _attempts(
    self: Actor, loop: asyncio.AbstractEventLoop
) -> Iterator[tuple[types.FrameType, asyncio.Task[Any]]]:
    """Every fast attempt of *self* running on *loop*: (its frame, its task)."""
    current = asyncio.current_task(loop)
    for task in asyncio.all_tasks(loop):
        if task is current:  # running, not awaiting: its chain is the stack (close() in it)
            yield from _running_attempts(self, task)
        else:
            for link, awaited in _chain(task.get_coro()):
                if _is_attempt(self, link, awaited):
                    yield link.cr_frame, task  # type: ignore[attr-defined]  # (a coroutine)


def _is_attempt(self: Actor, link: object, awaited: object) -> bool:
    """
    *link* is a fast attempt of *self* awaiting its dependency: not a call waiting for a slot
    (``admit_slow``: the queue is failed apart) nor one the general way runs (``Running``).
    """
    if type(link) is not types.CoroutineType or link.cr_frame is None:
        return False
    inner = awaited.cr_code if type(awaited) is types.CoroutineType else None
    return _attempt_frame(self, link.cr_frame, inner)


def _attempt_frame(self: Actor, frame: types.FrameType, inner: types.CodeType | None) -> bool:
    """
    *frame* runs a fast attempt of *self* awaiting its dependency (*inner*: the code of the
    coroutine it awaits, if one): the rule for an awaiting coroutine and a running stack alike.
    """
    return (
        frame.f_code in FAST_ATTEMPTS
        and _fast_frame_of(self, frame)
        and inner not in _BEFORE_OR_INSTEAD
    )


def _fast_frame_of(self: Actor, frame: types.FrameType) -> bool:
    """
    *frame*, an attempt's, is *self*'s and on its fast way: the general way (the same
    coroutine, ``_asyncio.attempt_fast``) has bound its ``running`` record, which its own
    timers and :meth:`Actor.close` cut off.
    """
    local = frame.f_locals
    return local.get("self") is self and "running" not in local


def _chain(link: object) -> list[tuple[object, object]]:
    """
    The await chain from *link* down: (link, what it awaits) for each coroutine, generator
    (``yield from``) and async generator on it. Into the C awaitables that wrap the next link
    (an async generator's ``asend``/``athrow``, ``coro.__await__()``, ``anext()``'s) through
    what they hold (``gc.get_referents``); a future ends it (its task is walked on its own).
    Plain loops and type checks: shutdown walks every task (10,000 tasks: ~40 ms).
    """
    chain: list[tuple[object, object]] = []
    todo = [link]
    while todo and len(chain) < _LONGEST:
        link = todo.pop()
        kind = type(link)
        if kind is types.CoroutineType:
            awaited = link.cr_await  # type: ignore[attr-defined]
        elif kind is types.AsyncGeneratorType:
            awaited = link.ag_await  # type: ignore[attr-defined]
        elif kind is types.GeneratorType:
            awaited = link.gi_yieldfrom  # type: ignore[attr-defined]
        elif kind in _WRAPPERS:
            todo.extend(held for held in gc.get_referents(link) if type(held) in _LINKS)
            continue
        else:  # None (not awaiting), a future, or an awaitable we cannot see into
            continue
        if awaited is not None:
            chain.append((link, awaited))
            todo.append(awaited)
    return chain


# Links of an await chain (a wrapper holds one), and how long one can be (a guard, not a limit
# met: Python's recursion limit stops deeper chains first).
_LINKS = frozenset({types.CoroutineType, types.AsyncGeneratorType, types.GeneratorType})
_LONGEST = 100_000


def _running_attempts(
    self: Actor, task: asyncio.Task[Any]
) -> Iterator[tuple[types.FrameType, asyncio.Task[Any]]]:
    """
    The attempts of *self* on the running task's stack, outermost first: up to the task's own
    coroutine (below it, a task that created an eager one runs too).
    """
    found: list[tuple[types.FrameType, asyncio.Task[Any]]] = []
    top = getattr(task.get_coro(), "cr_frame", None)
    inner = None
    frame: types.FrameType | None = sys._getframe()  # noqa: SLF001
    while frame is not None:
        if inner is not None and _attempt_frame(self, frame, inner.f_code):
            found.append((frame, task))
        if frame is top:
            break
        inner, frame = frame, frame.f_back
    return iter(found[::-1])


def _strays(
    self: Actor, loop: asyncio.AbstractEventLoop, found: dict[types.FrameType, Any]
) -> Iterator[tuple[types.FrameType, asyncio.Task[Any]]]:
    """
    The attempts the walk could not see (behind an awaitable it cannot look into, or a
    coroutine driven by hand): every attempt coroutine of *self* the garbage collector
    tracks, each with the task that drives it (:func:`_driver`). One it cannot tell the
    driver of is not cut off, and a ``RuntimeWarning`` says so.
    """
    strays = [coro for coro in _tracked_attempts(self) if coro.cr_frame not in found]
    tasks = asyncio.all_tasks(loop)
    for coro in strays:
        task = _driver(coro, tasks)
        if task is None:
            warnings.warn(
                f"ringfence: a call to {self.name!r} awaited through an awaitable that hides"
                " its task was not cut off at shutdown",
                RuntimeWarning,
                stacklevel=1,
            )
        else:
            yield coro.cr_frame, task  # type: ignore[misc]  # (not None: a running attempt)


def _tracked_attempts(self: Actor) -> list[types.CoroutineType[Any, Any, Any]]:
    """Every running fast attempt of *self* the garbage collector tracks, seen or not."""
    return [
        obj
        for obj in gc.get_objects()
        if type(obj) is types.CoroutineType
        and obj.cr_code in FAST_ATTEMPTS
        and obj.cr_await is not None
        and _is_attempt(self, obj, obj.cr_await)
    ]


def _driver(
    coro: types.CoroutineType[Any, Any, Any], tasks: set[asyncio.Task[Any]]
) -> asyncio.Task[Any] | None:
    """
    The task driving *coro*, however it does: the one task parked on the future at the bottom
    of *coro*'s await chain (the future the last ``yield`` handed to the task's step), if it
    is a future and one task only waits on it.
    """
    chain = _chain(coro)
    bottom = chain[-1][1] if chain else coro
    # (a C future is awaited through its iterator, a Python one through its __await__)
    held = gc.get_referents(bottom)
    drivers = [
        task
        for task in tasks
        if (waiter := task._fut_waiter) is not None  # type: ignore[attr-defined]  # noqa: SLF001
        and (waiter is bottom or any(ref is waiter for ref in held))
    ]
    return drivers[0] if len(drivers) == 1 else None


def _wrapper_types() -> tuple[type, ...]:
    """The C awaitables that wrap an await chain's next link, by their types."""

    async def agen() -> Any:  # pragma: no cover - never run
        yield

    async def coro() -> None:  # pragma: no cover - never run
        pass

    gen, routine = agen(), coro()
    kinds = (type(gen.asend(None)), type(gen.athrow(GeneratorExit)), type(routine.__await__()))
    kinds += (type(anext(gen, None)),) if sys.version_info >= (3, 10) else ()
    routine.close()
    return kinds


_WRAPPERS = _wrapper_types()
_BEFORE_OR_INSTEAD = frozenset({admit_slow.__code__})


@final
class FutureWaiter:
    """
    A call queued for a slot on asyncio (``_runtime.Waiter``), woken by a bare loop future:
    an anyio Event costs three objects and ~800 bytes per queued call.
    """

    __slots__ = ("error", "future", "granted")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False
        self.error: SupervisorError | None = None


def wake(waiter: FutureWaiter) -> None:
    future = waiter.future
    if not future.done():
        future.set_result(None)


def current_task_getter() -> Callable[[Any], asyncio.Task[Any] | None]:
    """``asyncio.current_task(loop)`` without its Python frame on 3.11 (272 ns -> 50 ns)."""
    current_tasks = getattr(asyncio.tasks, "_current_tasks", None)
    if sys.version_info >= (3, 12) or not isinstance(current_tasks, dict):
        return asyncio.current_task  # C-accelerated from 3.12 on
    return current_tasks.get


def _future_of(waiter: FutureWaiter) -> asyncio.Future[None]:
    return waiter.future


def signals() -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]]:
    """A queued call's wake-up: a future of the running loop, awaited as it is."""
    return functools.partial(FutureWaiter, asyncio.get_running_loop()), wake, _future_of
