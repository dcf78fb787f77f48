"""
One call through its policies: the loop around attempts, for calls and streams alike.

Theory of operation
-------------------
:func:`with_policies` is the whole of it: the total deadline (a :class:`~supervisor._timers.
Deadline` carrying the total the call started with), one call counted in the retry budget,
then attempts until one answers, a decision says stop, or the supervisor leaves. It is bound
to each actor at start (``types.MethodType``) and becomes the actor's ``entry`` when the
dependency has a retry, a total deadline or a fallback: ``await handle(x)`` runs this
coroutine directly, with no layer around it.

A stream (:class:`~supervisor._stream.Stream`) goes through the same loop until its first
item: its ``attempt`` admits, calls and waits for the first item; its ``fall_back`` streams
the fallback's items. So "what happens after a failed attempt" has one place for both.

What is decided, and where:

* after a failed attempt: :func:`_after_failure` adds what only the runtime knows
  (ringfence's own rejections are never retried) to the pure
  :meth:`policies.Retry.after_failure`, reusing the kind and Retry-After the actor read when
  it counted the failure (``Actor._failed``); the actor's handlers count and publish the
  outcome (:meth:`Actor.retry_scheduled`, :meth:`Actor.budget_refused`);
* after a result: :meth:`policies.Retry.after_result` (only when ``retry_on_result`` is
  set), then the same counting (:meth:`Actor.retry_scheduled`);
* the fallback: ``fallback_on`` decides (:func:`_may_fall_back`), :meth:`Actor.fell_back`
  counts it; its answer is awaited here.

Hedging (``policies.Hedge``, issue 19): a hedged dependency's attempts run as contenders of
a *race* (:func:`_race`), each in a task of a task group: the attempt, and after the delay
(``Hedging.delay``) a hedge beside it, up to ``max_hedges``, each ``delay`` after the
previous one. A hedge is started only when :meth:`Actor.hedged` admits it at once (breaker
closed, no pause, a rate-limit turn, a free bulkhead slot, the retry budget); it then runs
the attempt path with no await in between, so the slot it found is the one it takes. The
first success wins and cancels the others, which count nothing (``released``, like a
cancelled call). A failure while another contender runs is counted as usual and ends
nothing; the race fails when every contender has failed, with the last error, and the loop
decides about a retry as for any failed attempt. A stream races sibling streams
(``StreamAttempts.sibling``) to its first item: the winner is adopted, a contender that got
an item too late is closed here, in the caller's task.

This module awaits; it writes no actor state itself (the handlers do).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio

from policies import ErrorKind, retry_after
from policies.classify import _http_status as http_status
from policies.retry import Stop

from ._errors import (
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    RateLimited,
    SupervisorClosed,
    UnknownDependency,
    all_of,
    note_attempts,
    note_hedges,
)
from ._timers import Deadline

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._actor import Actor
    from ._hedging import Hedging


class StreamAttempts(Protocol):
    """What the loop uses of a stream (``_stream.Stream``): its attempt, its fallback, and
    the error that says its function returned nothing to stream (never retried)."""

    refused: TypeError | None

    async def attempt(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> None: ...

    async def fall_back(self, error: Exception) -> None: ...

    def sibling(self) -> StreamAttempts:
        """A fresh stream of the same call, for a hedge: its own slot, iterator and outcome."""

    def adopt(self, winner: StreamAttempts) -> None:
        """Take over *winner* (a :meth:`sibling` whose attempt got the first item)."""

    async def discard(self) -> None:
        """A sibling that lost the race after its attempt got an item: close it, count nothing."""


__all__ = ("StreamAttempts", "with_hedging", "with_policies")

_IN_BACKOFF: Final = "supervisor shut down while the call waited to retry"

#: An attempt's way: the actor's attempt, a stream's, or a race of hedges.
_Run = Callable[..., Coroutine[Any, Any, object]]

# ringfence's own rejections: never retried (DESIGN.md guarantee 11).
_NEVER_RETRIED: Final = (
    BreakerOpen,
    BulkheadFull,
    RateLimited,
    DeadlineExceeded,
    SupervisorClosed,
    UnknownDependency,
    DependencyCrashed,
)
#: Raised at a retry's admission or by its deadline: chained to the error being retried.
_CHAINED: Final = (DeadlineExceeded, RateLimited, BreakerOpen, BulkheadFull)
# Errors a fallback never sees (guarantee 12): they are about ringfence, not the dependency.
_NO_FALLBACK: Final = (SupervisorClosed, UnknownDependency, DependencyCrashed)


async def with_policies(
    self: Actor,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    _deadline: Deadline | None = None,
    stream: StreamAttempts | None = None,
    hedged: _Hedged | None = None,
) -> object:
    """
    Run one call (or a stream's way to its first item) through the dependency's policies.

    ``self`` is the actor: this is its method, defined here and bound at start. *stream* is
    the stream whose ``attempt`` and ``fall_back`` to use, or ``None`` for a call. *hedged*:
    the call's races (:func:`with_hedging`, a hedged dependency's loop), else ``None``.
    """
    retry = self.retry
    now = self.clock()
    total = self.total
    # The call keeps the limits it starts with (a reconfigure applies to later calls).
    deadline = Deadline.of(now, total) if total is not None else None
    budget = self.budget
    if budget is not None:
        budget.on_call(now)
    attempt = 0
    last: Exception | None = None
    run = self.attempt if stream is None else stream.attempt
    if hedged is not None:  # each attempt is a race
        run = hedged.race
    while True:
        attempt += 1
        try:
            result = await run(args, kwargs, deadline)
        except Exception as exc:
            final = stream is not None and exc is stream.refused
            error, fall_back, delay = _after_failure(self, exc, attempt, deadline, last, final)
            if error is not None:
                if hedged is not None and hedged.started:
                    note_hedges(error, self.name, attempt, hedged.started)
                if fall_back:
                    self.fell_back()
                    if stream is not None:
                        await stream.fall_back(error)
                        return None
                    return await _fallback(self, error, args, kwargs)
                if error is exc:
                    raise
                raise error from exc
            last = exc
            run = await _sleep_before_retry(self, delay, deadline, run)
            continue
        if stream is None and retry is not None and retry.retry_on_result is not None:
            decision = retry.after_result(
                result, attempt, self.rng, now=self.clock(), deadline=deadline, budget=budget
            )
            if not isinstance(decision, Stop):
                self.retry_scheduled(attempt, decision, None)
                run = await _sleep_before_retry(self, decision, deadline, run)
                continue
        return result


def with_hedging(
    self: Actor,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    _deadline: Deadline | None = None,
    stream: StreamAttempts | None = None,
) -> Coroutine[Any, Any, object]:
    """
    :func:`with_policies` for a hedged dependency, each attempt a race: its loop while
    ``Actor._derive`` finds a ``Hedge`` (so a dependency without one tests nothing per call).
    The call keeps the hedge it starts with. Returns the loop's coroutine itself (no
    coroutine of its own).
    """
    hedging = self.hedging
    hedged = _Hedged(self, hedging, stream) if hedging is not None else None
    return with_policies(self, args, kwargs, _deadline, stream, hedged)


def _after_failure(
    self: Actor,
    exc: Exception,
    attempt: int,
    deadline: Deadline | None,
    last: Exception | None,
    never_retried: bool = False,
) -> tuple[Exception | None, bool, float]:
    """
    What follows a failed attempt, for calls and streams alike: ``(None, False, delay)`` to
    retry after *delay* (counted and published), else ``(error, fall_back, 0.0)``: end with
    *error* (*exc* itself, or ``DeadlineExceeded`` when the backoff would end past the
    deadline), answered by the fallback when *fall_back*. The decision is
    ``policies.Retry.after_failure``'s; this adds what only the runtime knows: ringfence's
    own rejections and errors the caller knows are final (*never_retried*) are never
    retried. *last* is the previous attempt's error. Synchronous: nothing happens between
    the attempt's end (the actor's ``_failed``) and this.
    """
    if isinstance(exc, _CHAINED) and exc.__cause__ is None and last is not None:
        exc.__cause__ = last  # a retry refused at admission: say what it retried
    retry = self.retry
    # The kind the actor found for *exc*, if it was the latest failure it counted (None:
    # not classified) and, for a rate-limited one, the Retry-After it read (same cap).
    failed, failed_kind, hint = self._last_failure
    kind = failed_kind if failed is exc else None
    if retry is None or never_retried or all_of(exc, _NEVER_RETRIED):
        decision: float | Stop = Stop.FINAL
    else:
        if kind is not ErrorKind.RATE_LIMITED:  # read once per failure
            hint = retry_after(exc, now=time.time(), cap=retry.max_retry_after)
        decision = retry.after_failure(
            exc,
            kind,
            attempt,
            self.rng,
            now=self.clock(),
            deadline=deadline,
            budget=self.budget,
            retry_after=hint,
        )
    if decision is Stop.DEADLINE:
        assert deadline is not None
        expired = DeadlineExceeded(self.name, deadline.total)
        expired.__cause__ = exc
        return expired, self.fallback is not None, 0.0
    if isinstance(decision, Stop):
        if decision is Stop.BUDGET:  # a retry over budget is not made: no retry storm
            self.budget_refused(attempt, type(exc).__name__)
        if attempt > 1 or hasattr(exc, "__notes__"):
            note_attempts(exc, self.name, attempt)
        return exc, self.fallback is not None and _may_fall_back(self, exc, kind), 0.0
    self.retry_scheduled(attempt, decision, type(exc).__name__, http_status(exc))
    return None, False, decision


def _may_fall_back(self: Actor, exc: Exception, kind: ErrorKind | None) -> bool:
    """The fallback answers *exc*: never ringfence's own closing errors, else fallback_on."""
    if isinstance(exc, _NO_FALLBACK):
        return False
    try:
        return bool(self._settings.fallback_on(exc, kind))
    except Exception as rule_error:  # a user's predicate: the call's error goes on
        if exc.__context__ is None and rule_error is not exc:
            exc.__context__ = rule_error
        return False


@final
class _Hedged:
    """A hedged call's attempts, each a race (:func:`_race`), and its hedges so far."""

    __slots__ = ("actor", "attempts", "hedging", "started", "stream")

    def __init__(self, actor: Actor, hedging: Hedging, stream: StreamAttempts | None) -> None:
        self.actor = actor
        self.hedging = hedging  # the call keeps the hedge it started with
        self.stream = stream
        self.attempts = 0
        self.started = 0  # hedges started, over every attempt

    async def race(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> object:
        """One attempt for the loop: the attempt and its hedges, first success wins."""
        self.attempts += 1
        race = _Race()
        try:
            return await _race(
                self.actor, race, self.hedging, self.attempts, args, kwargs, deadline, self.stream
            )
        finally:
            self.started += race.started


@final
class _Race:
    """One attempt and its hedges (:func:`_race`): who is running, who won, the last error."""

    __slots__ = (
        "error",
        "failed",
        "late",
        "losers",
        "refused",
        "result",
        "running",
        "started",
        "wake",
        "winner",
    )

    def __init__(self) -> None:
        self.running = 0  # contenders scheduled and not ended
        self.started = 0  # hedges admitted (Actor.hedged said yes)
        self.winner = -1  # 0: the attempt; n: the n-th hedge; -1: nobody yet
        self.result: object = None  # the winner's result (a call) or its sibling (a stream)
        self.error: Exception | None = None  # the latest failure
        self.refused = False  # the latest failure is final (a stream's "not an async iterable")
        self.failed = 0  # contenders that failed with a counted error (Hedging.absorbed)
        self.late = 0  # calls that answered after the winner: counted successes, not the call's
        self.losers: list[StreamAttempts] = []  # siblings that got an item after the winner
        self.wake = anyio.Event()  # set when a contender ends

    def ended(self) -> None:
        self.running -= 1
        self.wake.set()

    def absorb(self, hedging: Hedging, *, outcome: bool, call: bool) -> None:
        """
        Tell *hedging* the outcomes its contenders counted that are not the call's own (one
        request, whatever they did). With an *outcome* of its own, the call's is the winner's
        success or, with no winner, its last error if counted (shutdown's SupervisorClosed is
        not); with none (the caller cancelled it), every counted outcome was absorbed, the
        winner's success too when it was a *call*'s (a stream counts when it finishes).
        """
        failed, late = self.failed, self.late
        if outcome:
            failed -= self.winner < 0 and not isinstance(self.error, SupervisorClosed)
        else:
            late += self.winner >= 0 and call
        if failed or late:
            hedging.absorbed(failed, late)


async def _race(
    self: Actor,
    race: _Race,
    hedging: Hedging,
    attempt: int,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    deadline: Deadline | None,
    stream: StreamAttempts | None,
) -> object:
    """
    Attempt *attempt* of a hedged call, with its hedges (see the module's docstring).

    Returns:
        The winner's result (a stream: ``None``, the winner adopted by *stream*).

    Raises:
        The last contender's error, when every one failed (``stream.refused`` is set when
        that error is final).
    """
    delay = hedging.delay()
    max_hedges = hedging.policy.max_hedges
    clock = self.clock
    try:
        async with anyio.create_task_group() as group:
            race.running = 1
            contender = (race, group, 0, 0.0, attempt, args, kwargs, deadline, stream)
            group.start_soon(_contend, self, *contender)
            next_at = clock() + delay
            hedges = 0
            while race.winner < 0 and race.running and hedges < max_hedges:
                with anyio.CancelScope(deadline=next_at):  # the loop's clock, as clock()
                    await race.wake.wait()
                if race.wake.is_set():  # a contender ended: look again, same schedule
                    race.wake = anyio.Event()
                    continue
                hedges += 1
                race.running += 1
                contender = (race, group, hedges, delay, attempt, args, kwargs, deadline, stream)
                group.start_soon(_contend, self, *contender)
                next_at += delay
    except BaseException as exc:
        # No outcome of the call's own: the caller's cancellation, a contender's
        # KeyboardInterrupt or the like (as a cancelled call counts no request).
        race.absorb(hedging, outcome=False, call=stream is None)
        # A group (failures and cancellations do not come as one): raised as its exception,
        # as an attempt in the caller's task would raise it.
        if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            raise exc.exceptions[0] from None
        raise
    race.absorb(hedging, outcome=True, call=stream is None)
    winner = race.winner
    if winner < 0:
        error = race.error
        assert error is not None  # every contender failed (a cancellation left above)
        if race.refused and stream is not None:
            stream.refused = error  # type: ignore[assignment]  # a TypeError, checked there
        raise error
    if winner:
        hedging.won()
    if stream is None:
        return race.result
    sibling: StreamAttempts = race.result  # type: ignore[assignment]
    try:
        await _discard(race.losers)
    except BaseException:
        await _discard([sibling])
        raise
    stream.adopt(sibling)
    return None


async def _contend(
    self: Actor,
    race: _Race,
    group: TaskGroup,
    index: int,
    delay: float,
    attempt: int,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    deadline: Deadline | None,
    stream: StreamAttempts | None,
) -> None:
    """
    One contender, in its own task: the attempt (*index* 0) or hedge number *index*, which
    first asks :meth:`Actor.hedged` (no: it ends, having run nothing). Between that yes and
    the attempt's own admission nothing awaits.
    """
    try:
        if index and not self.hedged(attempt, index, delay, args, kwargs):
            return
        if index:
            race.started += 1
        sibling = None if stream is None else stream.sibling()
        try:
            if sibling is None:
                result: object = await self.attempt(args, kwargs, deadline)
            else:
                await sibling.attempt(args, kwargs, deadline)
                result = sibling
        except Exception as exc:
            race.error = exc
            race.refused = sibling is not None and exc is sibling.refused
            # Shutdown's SupervisorClosed is counted nowhere (as a call's is not).
            race.failed += not isinstance(exc, SupervisorClosed)
            return
        if race.winner < 0:
            race.winner = index
            race.result = result
            group.cancel_scope.cancel()  # the others: cancelled, counting nothing
        elif sibling is not None:
            race.losers.append(sibling)  # an item too late: closed in the caller's task
        else:
            race.late += 1  # an answer too late: counted by the attempt, not the call's
    finally:
        race.ended()


async def _discard(siblings: list[StreamAttempts]) -> None:
    """Close each sibling (counting nothing), each one even when closing another is cut."""
    error: BaseException | None = None
    for sibling in siblings:
        try:
            await sibling.discard()
        except BaseException as exc:  # each is closed whatever the others do
            if error is None:
                error = exc
    if error is not None:
        raise error


async def _fallback(
    self: Actor, error: Exception, args: tuple[object, ...], kwargs: dict[str, Any]
) -> object:
    """
    The fallback's answer to *error*. Whatever the fallback is (async def, a wraps
    decorator, a lambda returning a coroutine), an awaitable result is awaited here, on the
    loop; a sync fallback runs on the loop too (it is meant to be a cheap answer: a cache, a
    default).
    """
    fallback = self.fallback
    assert fallback is not None
    result = fallback(error, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


async def _sleep_before_retry(
    self: Actor, delay: float, deadline: Deadline | None, run: _Run
) -> _Run:
    """
    Backoff: holds no slot; the supervisor leaving `async with` ends it at once. Returns the
    next attempt's way: *run*; or, when the loop ended the backoff past the *deadline* (the
    retry was decided because it would end before it), a refusal that never reaches the
    dependency (``Actor.past_deadline``), which the loop meets as that attempt's error.
    """
    with anyio.move_on_after(delay):
        await self.closing.wait()
    if not self.accepting:
        raise SupervisorClosed(_IN_BACKOFF)
    if deadline is None or self.clock() < deadline:
        return run

    async def too_late(*_: object) -> object:
        assert deadline is not None
        raise self.past_deadline(deadline)

    return too_late
