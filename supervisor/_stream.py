"""
Streamed calls: ``async with supervisor.stream(name, *args) as items: async for item in items``.

Theory of operation
-------------------
A :class:`Stream` is one call whose answer comes as items: an LLM's tokens, a server's
events. It goes through the dependency's policies like a call, with the rules DESIGN.md
("Streaming calls") sets:

* **Admission and the slot.** Entering the stream admits it exactly as a call is admitted
  (:meth:`Actor.acquire <supervisor._actor.Actor.acquire>`: breaker, pause, shared verdict,
  rate limits, bulkhead), and the slot it gets is held until the stream closes: the end of
  its items, its error, the caller leaving ``async with`` early, or the supervisor leaving.
  While it holds the slot the stream is in ``actor.streams``, so leaving the supervisor
  reaches it (:meth:`Stream.cut_off`).
* **Opening = the first item.** ``__aenter__`` calls the function, awaits the iterable when
  the function returned an awaitable of one (an SDK's ``create(stream=True)``), and waits for
  the first item, which it keeps until the caller asks for it. Retries, their backoff and the
  fallback all happen there, so "before the first item reaches the caller" has one place in
  the code. After ``__aenter__`` returns, an error propagates unchanged.
* **Waits are cut by a cancel scope we hold.** Every wait inside the dependency's code (the
  call, the first item, each later item, closing) runs in an ``anyio.CancelScope`` kept in
  ``self._scope``. Its deadline is the item's limit (``first_item``/``between_items``, or the
  total deadline when that comes first); :meth:`cut_off` cancels it from the supervisor's
  task. anyio scopes compose with the caller's own: a cancellation of an enclosing scope, or
  a native ``task.cancel()`` landing in the same loop iteration, is not swallowed by ours
  (anyio checks both on exit), so the caller's cancellation always goes on as itself. A scope
  costs a few microseconds per item: nothing beside a network round trip per token.
* **Exactly one outcome, then the slot.** Success when the items end or the caller stops
  early (``break``, an exception of its own, a relay generator closed); failure when the
  dependency raises, or an item is late (``AttemptTimeout``); nothing when the caller is
  cancelled, the total deadline passes (``DeadlineExceeded``: the caller's budget, not the
  dependency's fault) or the supervisor cuts the stream off. What a wait we cut off counts
  and raises is decided where a call's is (``Actor.cut_off``): a deadline is one
  ``status().cut_off``, an item's limit a failure, the supervisor leaving nothing. The latency
  recorded is the time to the first item (to the end, for a stream with no item; to the
  error, for one that failed before its first item): that is what ``Breaker(slow_call=)`` and
  ``status().latency`` measure for a stream.
* **Closed in the caller's task.** The iterator is closed with ``aclose()`` (and the iterable
  too, when it is a separate object with an ``aclose()``, like an SDK stream owning an HTTP
  response) by the task that iterated it: in ``__anext__`` when the stream ends, fails or is
  cut off, else in ``__aexit__``. Never by the garbage collector: an async generator
  finalised there runs its ``finally`` in some other task, where its cancel scopes and
  context variables are not its own (trio and anyio say the same). The same rule means the
  dependency's generator must not ``yield`` inside a cancel scope or task group.

Streams do not apply ``Retry.retry_on_result`` (items are not a result) nor a rate limit's
``settle`` (there is no single result to price): the turns taken at admission stand.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeVar, final

import anyio
import anyio.lowlevel

from policies.timeout import limit_of

from ._admission import acquire
from ._cutoff import cut_error
from ._errors import DependencyCrashed
from ._timers import CLOSED, DEADLINE, TIMEOUT, Deadline

if TYPE_CHECKING:
    from policies import Timeout

    from ._actor import Actor
    from ._errors import SupervisorError

__all__ = ("Stream",)

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)

# Where a stream is (Stream._phase).
_NEW: Final = 0  # made by supervisor.stream(), not entered
_OPENING: Final = 1  # in __aenter__: admission, attempts, backoff, the fallback
_OPEN: Final = 2  # items flow
_DONE: Final = 3  # ended, failed, cut off and closed, or never opened

# How a stream ends, for _finish.
_ENDED: Final = 0  # the items ended, or the caller stopped early: success
_FAILED: Final = 1  # the dependency raised, or an item was late: failure
_NOTHING: Final = 2  # the caller was cancelled, the deadline passed: counts nothing


#: What a hedged stream's winning sibling hands over to the stream (Stream.adopt).
_HANDED_OVER: Final = (
    "_phase",
    "_iterable",
    "_iterator",
    "_first",
    "_cut",
    "_holding",
    "_counted",
    "_epoch",
    "_start",
    "_to_first",
    "_deadline",
)

_NO_ITEM: Final[Any] = object()  # no first item is kept
_END: Final[Any] = object()  # the first wait ended the stream


async def _resolve(result: object) -> object:
    """A result that is not an async iterable but is awaitable, awaited (``create(stream=True)``)."""
    if not hasattr(type(result), "__aiter__") and inspect.isawaitable(result):
        return await result
    return result


@final
class _Items(AsyncIterator[T]):
    """What ``async with stream as items`` binds: the stream's items, one ``__anext__`` each."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream[Any]) -> None:
        self._stream = stream

    def __anext__(self) -> Any:
        # The stream's coroutine itself: one coroutine layer less per item.
        return self._stream._next()  # noqa: SLF001  # the stream's own view of its items

    def __repr__(self) -> str:
        return f"<items of {self._stream!r}>"


@final
class Stream(Generic[R_co]):
    """
    A protected streamed call: ``supervisor.stream(name, *args, **kwargs)`` or
    ``handle.stream(*args, **kwargs)``. Use it once, as an async context manager::

        async with supervisor.stream("llm", prompt) as tokens:
            async for token in tokens:
                ...

    The dependency's function is an async generator function, or a function (sync or async)
    returning an async iterable or an awaitable of one. A sync function is called on the
    event loop, not in a worker thread: it only creates the stream, and a client's stream
    belongs to the loop. The items are the dependency's own, unchanged.

    Entering admits the call (``BreakerOpen``, ``BulkheadFull``, ``RateLimited`` as for
    calls) and waits for the first item; retries, backoff and the fallback happen only
    there. The bulkhead slot is held until the stream closes.

    Timeouts (``policies.Timeout``): ``first_item`` (else ``attempt``) bounds each attempt
    from its request to its first item; ``between_items`` bounds each later wait for an item
    or for the end; both raise ``AttemptTimeout``, a failure of the dependency, retried only
    before the first item. ``total`` bounds everything from the first request to the end
    (``DeadlineExceeded``; it counts nothing against the dependency).

    Outcome for the breaker: success when the items end or the caller stops early; failure
    when the dependency raises or an item is late; nothing when the caller is cancelled.
    The latency recorded is the time to the first item.

    The fallback, ``fallback(error, *args, **kwargs)``, may return an async iterable (or an
    awaitable of one) or be an async generator function; its items come to the caller with
    no policy applied (no slot, no timeout, no outcome), and it is closed like the
    dependency's.

    Raises (from ``async with``):
        BreakerOpen, BulkheadFull, RateLimited: rejected at admission (unless the fallback
            answers).
        AttemptTimeout, DeadlineExceeded: no first item in time (unless the fallback answers).
        SupervisorClosed: the supervisor is not running, or left while the stream opened.
        DependencyCrashed: the dependency's actor crashed.
        TypeError: the function (or the fallback) returned no async iterable; never retried.
        RuntimeError: the stream was entered a second time.
        Exception: the dependency's own last exception before its first item.

    Raises (from ``async for``):
        AttemptTimeout: the next item took longer than ``between_items``.
        DeadlineExceeded: the total deadline passed.
        SupervisorClosed: the supervisor left ``async with``: the stream was cut off, its
            slot freed; every further item raises it too.
        Exception: the dependency's own error, unchanged and not retried.
    """

    __slots__ = (
        "_actor",
        "_args",
        "_between",
        "_counted",
        "_cut",
        "_deadline",
        "_epoch",
        "_first",
        "_holding",
        "_iterable",
        "_iterator",
        "_kwargs",
        "_phase",
        "_scope",
        "_start",
        "_timeout",
        "_to_first",
        "refused",
    )

    def __init__(self, actor: Actor, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        self._actor = actor
        self._args = args
        self._kwargs = kwargs
        self._phase = _NEW
        self._iterable: object = None  # what the function returned (an async iterable)
        self._iterator: AsyncIterator[Any] | None = None  # its iterator, until closed
        self._first: Any = _NO_ITEM  # the first item, kept until the caller asks for it
        self._scope: anyio.CancelScope | None = None  # around the wait in progress, if any
        self._cut = False  # the supervisor left: every further item raises SupervisorClosed
        self._holding = False  # a slot is ours (and we are in actor.streams)
        self._counted = True  # the outcome is settled (True until a slot is taken)
        self._epoch = 0  # the breaker epoch the attempt was admitted in
        self._start = 0.0  # when the current attempt was admitted (loop clock)
        self._to_first: float | None = None  # seconds to the first item, once it came
        self._timeout: Timeout | None = None  # the policy the stream started with, kept
        self._deadline: Deadline | None = None  # Timeout.total, as a loop-clock time
        self._between: float | None = None  # Timeout.between_items
        self.refused: TypeError | None = None  # ours: "not an async iterable" (never retried)

    def __del__(self) -> None:
        # Entered and never left: its generator is left to the garbage collector, which
        # closes it in another task (or warns, on trio). Its slot came back when the
        # supervisor left (until then the actor holds the stream, so it is not collected).
        if getattr(self, "_iterator", None) is not None and self._phase == _OPEN:
            warnings.warn(
                f"{self!r} was entered and never closed: its iterator is left to the garbage"
                " collector; use `async with supervisor.stream(...) as items:`",
                ResourceWarning,  # (no source=self: the record would keep the stream alive)
                stacklevel=1,
            )

    def __repr__(self) -> str:
        phase = ("new", "opening", "open", "closed")[self._phase]
        if self._cut:
            phase = "cut off"
        return f"<Stream of {self._actor.name!r}, {phase}>"

    # ==========================================================================================
    # The context manager

    async def __aenter__(self: Stream[AsyncIterable[T]]) -> AsyncIterator[T]:
        if self._phase != _NEW:
            msg = "a Stream can be entered only once: call supervisor.stream() again"
            raise RuntimeError(msg)
        self._phase = _OPENING
        try:
            await self._open()
        except BaseException:
            self._phase = _DONE
            raise
        if self._phase == _OPENING:  # (an empty stream is already _DONE)
            self._phase = _OPEN
        return _Items(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._phase == _DONE:
            return
        self._phase = _DONE
        # The caller stopped early (it broke out, raised an error of its own, or it is a relay
        # generator being closed): success. Cancelled (or interrupted): nothing.
        early = exc is None or isinstance(exc, Exception | GeneratorExit)
        await self._finish(_ENDED if early else _NOTHING, None, self._actor.clock())

    # ==========================================================================================
    # Before the first item: admission, attempts, retries, the fallback

    async def _open(self) -> None:
        """
        Admission, attempts, retries and the fallback until the first item: the calls' one
        loop (``_call.with_policies``), with this stream's :meth:`attempt` and
        :meth:`fall_back`.
        """
        # The stream keeps the limits it starts with: a reconfigure applies to later calls.
        timeout = self._timeout = self._actor.timeout_policy
        self._between = timeout.between_items if timeout is not None else None
        await self._actor.policy_loop(self._args, self._kwargs, None, self)

    async def attempt(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> None:
        """One attempt for the loop (``_call.with_policies``): see :meth:`_attempt`."""
        self._deadline = deadline  # (the same for every attempt: the call's)
        await self._attempt(deadline)

    async def _attempt(self, deadline: Deadline | None) -> None:
        """
        One attempt: admission, the call, the first item. On return the first item is kept
        (and the slot held), or the stream ended empty (success, slot given back).

        Raises:
            the attempt's error, counted and with the slot given back.
        """
        actor = self._actor
        epoch = await acquire(actor, self._args, self._kwargs, deadline)
        # One slot is ours from here: give it back exactly once (_let_go), and settle the
        # outcome exactly once (_count), whatever happens next.
        self._epoch = epoch
        self._holding = True
        self._counted = False
        self._to_first = None
        actor.streams.hold(self)
        clock = actor.clock
        start = self._start = clock()
        timeout = self._timeout
        limit = timeout.first_item if timeout is not None else None
        setting = "first_item"
        if limit is None:
            limit, setting = (timeout.attempt if timeout is not None else None), "attempt"
        scope_deadline, by_deadline = limit_of(start, limit, deadline)
        scope = self._scope = anyio.CancelScope(deadline=scope_deadline)
        first: Any = _NO_ITEM
        try:
            with scope:
                result = await _resolve(actor.fn(*self._args, **self._kwargs))
                iterator = self._iterate(result, "function")
                try:
                    first = await iterator.__anext__()
                except StopAsyncIteration:
                    first = _END
        except BaseException as exc:
            self._scope = None
            end = clock()
            if self._cut and isinstance(exc, Exception):
                await self._raise_cut(CLOSED, 0.0, end, exc)
            await self._finish(_FAILED if isinstance(exc, Exception) else _NOTHING, exc, end)
            raise
        self._scope = None
        end = clock()
        if self._cut or scope.cancelled_caught:
            await self._raise_limit(by_deadline, limit, setting, end)
        if first is _END:  # an empty stream: it ended, successfully
            self._phase = _DONE
            await self._finish(_ENDED, None, end)
            return
        self._to_first = end - start
        self._first = first

    # -- hedging (policies.Hedge): the race to the first item is _call._race's ----------------

    def sibling(self) -> Stream[R_co]:
        """A fresh stream of the same call and limits: one contender of a hedged opening."""
        sibling: Stream[R_co] = Stream(self._actor, self._args, self._kwargs)
        sibling._phase = _OPENING
        sibling._timeout = self._timeout
        sibling._between = self._between
        return sibling

    def adopt(self, winner: object) -> None:
        """
        Take over *winner*, the sibling whose attempt got the first item (or ended empty):
        its slot (the actor's cut-off now reaches this stream), its iterator, its first item
        and the outcome it has yet to count.
        """
        assert isinstance(winner, Stream)
        winner.hand_over(self)

    def hand_over(self, stream: Stream[Any]) -> None:
        """:meth:`adopt`, from the winner's side: everything it holds moves to *stream*."""
        for name in _HANDED_OVER:
            setattr(stream, name, getattr(self, name))
        if self._holding:
            self._holding = False
            self._actor.streams.adopt(self, stream)
        self._iterator = self._iterable = None
        self._phase = _DONE

    async def discard(self) -> None:
        """A sibling that got its first item after the race was won: close it, count nothing."""
        self._phase = _DONE
        self._first = _NO_ITEM
        await self._finish(_NOTHING, None, self._actor.clock())

    async def fall_back(self, error: Exception) -> None:
        """The fallback answers *error*: its items stream with no policy (no slot held)."""
        actor = self._actor
        fallback = actor.fallback
        assert fallback is not None
        self._iterate(await _resolve(fallback(error, *self._args, **self._kwargs)), "fallback")

    def _iterate(self, result: object, what: str) -> AsyncIterator[Any]:
        """
        Keep *result* (an async iterable) and its iterator, to close them when the stream ends.

        Raises:
            TypeError: *result* is not an async iterable; never retried.
        """
        kind = type(result).__name__
        if hasattr(type(result), "__aiter__"):
            iterator = result.__aiter__()  # type: ignore[attr-defined]
            if hasattr(type(iterator), "__anext__"):
                self._iterable, self._iterator = result, iterator
                return iterator  # type: ignore[no-any-return]
            problem = (
                f"{kind}, whose __aiter__() gave {type(iterator).__name__}, not an async iterator"
            )
        else:
            if inspect.isgenerator(result):
                result.close()  # a sync generator nobody will run: its finally now, not at gc
            problem = f"{kind}, not an async iterable (nor an awaitable of one)"
            if hasattr(type(result), "__aenter__"):
                problem += (
                    "; it is an async context manager: register an async generator function"
                    " that enters it and yields its items"
                )
            elif hasattr(type(result), "__iter__"):
                problem += "; it is a sync iterable: a stream's items come from an async iterable"
        name = self._actor.name
        self.refused = TypeError(
            f"the {what} of {name!r} returned {problem}: it cannot be streamed"
        )
        raise self.refused

    # ==========================================================================================
    # After the first item

    async def _next(self) -> Any:
        """One item for ``async for`` (see :class:`_Items`)."""
        if self._cut:  # (the kept first item too: "the next item raises")
            self._first = _NO_ITEM
            await self._raise_cut(CLOSED, 0.0, 0.0)  # closes the generator, in this task
        first = self._first
        if first is not _NO_ITEM:
            self._first = _NO_ITEM
            # A cancellation point like any __anext__ (the item is the stream's, not lost: a
            # cancelled caller ends the stream anyway).
            await anyio.lowlevel.checkpoint()
            return first
        iterator = self._iterator
        if iterator is None or self._phase != _OPEN:
            raise StopAsyncIteration
        if not self._holding:  # the fallback's items: no policy applies
            try:
                return await iterator.__anext__()
            except BaseException as exc:
                self._phase = _DONE
                await self._finish(
                    _ENDED if isinstance(exc, StopAsyncIteration) else _FAILED, exc, 0.0
                )
                raise
        actor = self._actor
        clock = actor.clock
        now = clock()
        deadline = self._deadline
        if deadline is not None and now >= deadline:
            # Spent with the previous item: cut off (the caller's budget, not the
            # dependency's failure), decided here, before the generator runs on, the same
            # way on both backends.
            self._phase = _DONE
            await self._raise_cut(DEADLINE, deadline.total, now)
        limit = self._between
        scope_deadline, by_deadline = limit_of(now, limit, self._deadline)
        scope = self._scope = anyio.CancelScope(deadline=scope_deadline)
        item: Any = _NO_ITEM
        try:
            with scope:
                item = await iterator.__anext__()
        except StopAsyncIteration:
            self._scope = None
            self._phase = _DONE
            await self._finish(_ENDED, None, clock())
            raise
        except BaseException as exc:
            self._scope = None
            self._phase = _DONE
            end = clock()
            if self._cut and isinstance(exc, Exception):
                await self._raise_cut(CLOSED, 0.0, end, exc)
            await self._finish(_FAILED if isinstance(exc, Exception) else _NOTHING, exc, end)
            raise
        self._scope = None
        if scope.cancelled_caught or self._cut:
            self._phase = _DONE
            await self._raise_limit(by_deadline, limit, "between_items", clock())
        return item

    # ==========================================================================================
    # Endings

    async def _raise_limit(
        self, by_deadline: bool, limit: float | None, setting: str, end: float
    ) -> NoReturn:
        """Our scope ended a wait: the supervisor left, the total deadline or *limit* passed."""
        if self._cut:
            await self._raise_cut(CLOSED, 0.0, end)
        if by_deadline:
            assert self._deadline is not None
            await self._raise_cut(DEADLINE, self._deadline.total, end)
        assert limit is not None
        waiting = "the next item" if setting == "between_items" else "the first item"
        note = f"ringfence: {waiting} did not come within {limit:g}s (Timeout.{setting})"
        await self._raise_cut(TIMEOUT, limit, end, note=note)

    async def _raise_cut(
        self,
        why: int,
        seconds: float,
        end: float,
        cause: BaseException | None = None,
        note: str | None = None,
    ) -> NoReturn:
        """
        A wait cut off by us (*why*: ``_timers.CLOSED``, ``DEADLINE``, ``TIMEOUT``; *seconds*
        the limit): the actor's handler counts it and says its error, as for a call's
        attempt (``Actor.cut_off``); then close, give back, raise it (*cause*: what
        the dependency's code raised instead, the cut swallowed). Cut off by the supervisor
        leaving, the stream was counted then (:meth:`cut_off`): each further item only
        raises.
        """
        actor = self._actor
        crash: DependencyCrashed | None = None
        error: SupervisorError | None = None
        if not self._counted:
            self._counted = True
            try:
                error = actor.cut_off(
                    why, self._epoch, self._started(end), end, seconds, stream=True
                )
            except DependencyCrashed as exc:  # the breaker's user code: raised after closing
                crash = exc
        if error is None:
            error = cut_error(actor.name, why, seconds, stream=True)
        if note is not None:
            error.add_note(note)
        await self._finish(_NOTHING, None, end)  # (counted: closes, gives the slot back)
        if crash is not None:
            raise crash
        if cause is not None:
            raise error from cause
        raise error

    def cut_off(self) -> None:
        """
        The supervisor is leaving ``async with`` (``Actor.close``, synchronous): the stream
        counts nothing, its slot is given back now (its caller may never come back for it),
        and a wait inside the dependency's code is cancelled. The caller's pending or next
        item raises ``SupervisorClosed``, after the iterator is closed in the caller's task.
        """
        self._cut = True
        if not self._counted:  # what a cut-off counts: the actor's handler, as for a call
            self._counted = True
            actor = self._actor
            end = actor.clock()
            # (its error is not raised here: the caller's next item raises one, _raise_cut)
            actor.cut_off(CLOSED, self._epoch, self._started(end), end, 0.0, stream=True)
        self._let_go()
        scope = self._scope
        if scope is not None:
            scope.cancel()

    async def _finish(self, how: int, error: BaseException | None, end: float) -> None:
        """
        End the stream: settle its outcome, close the iterator in this task, give the slot
        back; each at most once, the slot last (the outcome first, so that a breaker it opens
        fails the queue before the slot could pass to a waiter: guarantee 10).

        A failure or nothing is counted before closing: the caller's error (or cancellation)
        is what propagates, and an ``Exception`` raised while closing is dropped for it. A
        success is counted after closing: an ``Exception`` closing raises is the stream's
        failure, and propagates (as ``contextlib.aclosing`` would). A cancellation while
        closing always propagates.

        Raises:
            DependencyCrashed: settling the outcome crashed the actor (after closing).
            BaseException: what closing raised, by the rules above.
        """
        crash: DependencyCrashed | None = None
        try:
            if how != _ENDED:
                crash = self._settle(how, error, end)
            try:
                await self._close()
            except Exception as close_error:
                if how == _ENDED:
                    crash = self._settle(_FAILED, close_error, self._actor.clock())
                    if crash is None:
                        raise
            except BaseException:
                if how == _ENDED:
                    self._settle(_ENDED, None, end)  # (a crash there: the cancellation wins)
                raise
            else:
                if how == _ENDED:
                    crash = self._settle(_ENDED, None, end)
        finally:
            self._let_go()
        if crash is not None:
            raise crash

    def _settle(
        self, how: int, error: BaseException | None, end: float
    ) -> DependencyCrashed | None:
        """:meth:`_count`, returning the crash it caused (the breaker's user code raised)."""
        try:
            self._count(how, error, end)
        except DependencyCrashed as crash:
            return crash
        return None

    def _count(self, how: int, error: BaseException | None, end: float) -> None:
        """Settle the outcome, once; the latency is the time to the first item."""
        if self._counted:
            return
        self._counted = True
        actor = self._actor
        if how == _NOTHING:
            actor.released(self._epoch)
            return
        start = self._started(end)
        if how == _ENDED:
            actor.succeeded(self._epoch, start, end)
        else:
            assert error is not None
            actor.ended_with(error, self._epoch, start, end)

    def _started(self, end: float) -> float:
        """When the outcome ending at *end* started: the latency is the time to the first item."""
        to_first = self._to_first
        return end - to_first if to_first is not None else self._start

    def _let_go(self) -> None:
        """Give the slot back, once."""
        if self._holding:
            self._holding = False
            self._actor.release_stream(self)

    async def _close(self) -> None:
        """
        Close the iterator (``aclose()``: an async generator's ``finally`` runs now, in this
        task) and then the iterable, when it is another object with an ``aclose()`` (an SDK
        stream owning its HTTP response). The supervisor leaving cuts a slow close short.
        """
        iterator, iterable = self._iterator, self._iterable
        self._iterator = self._iterable = None
        if iterator is None:
            return
        if not self._holding:  # the fallback's, or cut off: no slot to free, nothing to cut
            await _aclose(iterator, iterable)
            return
        scope = self._scope = anyio.CancelScope()
        try:
            with scope:
                await _aclose(iterator, iterable)
        finally:
            self._scope = None


async def _aclose(iterator: object, iterable: object) -> None:
    """``aclose()`` the iterator, then the iterable when it is another object that has one."""
    try:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    finally:
        if iterable is not iterator:
            aclose = getattr(iterable, "aclose", None)
            if aclose is not None:
                await aclose()
