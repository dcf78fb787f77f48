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

* after a failed attempt: :meth:`Actor.after_failure <supervisor._actor.Actor.after_failure>`,
  a synchronous handler, asks the pure :meth:`policies.Retry.after_failure` and counts and
  publishes the outcome (a retry, the budget refusing one, a deadline);
* after a result: :meth:`policies.Retry.after_result` (only when ``retry_on_result`` is
  set), then the same handler's counting (:meth:`Actor.retry_scheduled`);
* the fallback: :meth:`Actor.fell_back` counts it; its answer is awaited here.

This module awaits; it writes no actor state itself (the handlers do).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from policies.retry import Stop

from ._errors import SupervisorClosed
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
            error, fall_back, delay = self.after_failure(exc, attempt, deadline, last, final)
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
