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

This module awaits; it writes no actor state itself (the handlers do).
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

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
)
from ._timers import Deadline

if TYPE_CHECKING:
    from ._actor import Actor


class StreamAttempts(Protocol):
    """What the loop uses of a stream (``_stream.Stream``): its attempt, its fallback, and
    the error that says its function returned nothing to stream (never retried)."""

    refused: TypeError | None

    async def attempt(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> None: ...

    async def fall_back(self, error: Exception) -> None: ...


__all__ = ("StreamAttempts", "with_policies")

_IN_BACKOFF: Final = "supervisor shut down while the call waited to retry"

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
) -> object:
    """
    Run one call (or a stream's way to its first item) through the dependency's policies.

    ``self`` is the actor: this is its method, defined here and bound at start. *stream* is
    the stream whose ``attempt`` and ``fall_back`` to use, or ``None`` for a call.
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
    while True:
        attempt += 1
        try:
            result = await run(args, kwargs, deadline)
        except Exception as exc:
            final = stream is not None and exc is stream.refused
            error, fall_back, delay = _after_failure(self, exc, attempt, deadline, last, final)
            if error is not None:
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
            await _sleep_before_retry(self, delay)
            continue
        if stream is None and retry is not None and retry.retry_on_result is not None:
            decision = retry.after_result(
                result, attempt, self.rng, now=self.clock(), deadline=deadline, budget=budget
            )
            if not isinstance(decision, Stop):
                self.retry_scheduled(attempt, decision, None)
                await _sleep_before_retry(self, decision)
                continue
        return result


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
        return bool(self._fallback_on(exc, kind))
    except Exception as rule_error:  # a user's predicate: the call's error goes on
        if exc.__context__ is None and rule_error is not exc:
            exc.__context__ = rule_error
        return False


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


async def _sleep_before_retry(self: Actor, delay: float) -> None:
    """Backoff: holds no slot; the supervisor leaving `async with` ends it at once."""
    with anyio.move_on_after(delay):
        await self.closing.wait()
    if not self.accepting:
        raise SupervisorClosed(_IN_BACKOFF)
