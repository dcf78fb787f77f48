"""
Retry: which failures are tried again, how often, and after how long.

The policy is pure: :meth:`Retry.delay` answers "wait how long before retry *n*, given this
exception?" and :meth:`Retry.should_retry` answers "is this exception worth another try?". The
runtime adds the rules that need its knowledge: ringfence's own rejections (``BreakerOpen``,
``BulkheadFull``, ...) are never retried, cancellation is never seen here, and a retry whose
backoff would end past the total deadline is not started.

By default ``transient``, ``rate_limited`` and ``unknown`` errors are retried (see
:func:`policies.classify`): a timeout, a dropped connection, a 5xx or a 429 may well succeed a
moment later, and so may an error nobody classified (a DB driver's own exception, a
``RuntimeError``): failing safe, it is treated as the dependency's, and the retry budget bounds
what that costs in an outage. A 400, a 401, a ``ValueError`` or a ``permanent`` error fails the
same way every time, and retrying it only multiplies the load on a dependency that is fine.
Until issue 9 the default was every ``Exception``; from issue 9 to issue 16 it left ``unknown``
out, which made retries blind to every client without a rule.
"""

from __future__ import annotations

import enum
import random
from typing import Protocol, TypeVar, final, runtime_checkable

import attrs

from . import backoff as _backoff
from ._matchers import DEFAULT_RETRY_ON, ErrorFilter, ErrorSpec
from ._validators import integer, number, seconds
from .budget import Budget, RetryBudget
from .classify import ErrorKind

__all__ = ("Retry", "RetryPredicate", "ResultPredicate", "Stop")


@final
class Stop(enum.Enum):
    """Why :meth:`Retry.after_failure` or :meth:`Retry.after_result` says: no retry."""

    #: not worth another attempt (``retry_on``, ``retry_on_result``), or none is left
    FINAL = "final"
    #: worth one, but the retry budget refused it (an outage must not multiply the load)
    BUDGET = "budget"
    #: worth one, but its backoff would end past the total deadline
    DEADLINE = "deadline"


@runtime_checkable
class RetryPredicate(Protocol):
    """``retry_on`` as a function: ``True`` when the exception is worth another attempt."""

    def __call__(self, exc: Exception, /) -> bool: ...


@runtime_checkable
class ResultPredicate(Protocol):
    """``retry_on_result``: ``True`` when a returned value should be tried again."""

    def __call__(self, result: object, /) -> bool: ...


_T = TypeVar("_T")


def _retry_on(value: ErrorSpec) -> ErrorFilter:
    return ErrorFilter.of(value, name="retry_on")


def _check_backoff(_inst: object, _attr: attrs.Attribute[_T], value: _T) -> None:
    if not callable(value):
        msg = (
            "'backoff' must be a callable (attempt, rng) -> seconds such as"
            f" backoff.exponential(), got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)


def _check_result_predicate(_inst: object, _attr: attrs.Attribute[_T], value: _T) -> None:
    if value is not None and not callable(value):
        msg = (
            "'retry_on_result' must be None or a predicate (result) -> bool,"
            f" got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)


def _retry_after(exc: BaseException, ceiling: float) -> float:
    """The exception's ``retry_after`` seconds, at most *ceiling*, if usable; else 0."""
    return _usable(getattr(exc, "retry_after", None), ceiling)


def _usable(hint: object, ceiling: float) -> float:
    """*hint* seconds, at most *ceiling*, if it is a number > 0; else 0."""
    # `hint > 0` is False for NaN. min() before float(): float(10**400) raises OverflowError.
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint > 0:
        return float(min(hint, ceiling))
    return 0.0


def _check_budget(_inst: object, _attr: attrs.Attribute[_T], value: _T) -> None:
    if value is not None and not isinstance(value, Budget):
        msg = (
            "'budget' must be None or a policies.Budget,"
            f" got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)


@final
@attrs.frozen(kw_only=True)
class Retry:
    """
    Retry policy for one dependency.

    Args:
        attempts: tries in all, the first included (``>= 1``; 1 means no retry).
        backoff: seconds before retry ``n`` (``n`` = 1 before the second try); any callable
            ``(attempt, rng) -> seconds``. Default ``backoff.full(backoff.exponential())``.
        retry_on: which errors are worth another attempt: an exception type, an
            :class:`~policies.ErrorKind` (or its value, ``"transient"``), a plain predicate
            ``(exc) -> bool``, or a tuple, list or set mixing those (see
            :meth:`~policies.ErrorFilter.of`); stored as one :class:`~policies.ErrorFilter`.
            Default: kinds ``transient``, ``rate_limited`` and ``unknown``, that is timeouts
            (ringfence's ``AttemptTimeout`` included: it is a ``TimeoutError``), connection
            errors, 5xx, overloads, 429, and whatever :func:`~policies.classify` cannot
            classify (a ``RuntimeError``, a driver's own exception, an unparsable answer):
            fail safe. Not ``invalid_input`` or ``auth`` (a 400 or a 401 fails the same way
            every time) or ``permanent``. Pass ``retry_on=Exception`` for "retry everything",
            or ``retry_on=("transient", "rate_limited")`` to leave ``unknown`` out (or teach
            a ``Classifier`` your client's errors). ringfence's own rejections are never
            retried, whatever this says.
        retry_on_result: predicate ``(result) -> bool``; ``True`` retries a returned value.
            The last such result is returned when attempts run out.

        budget: a :class:`~policies.Budget` shared by every caller of the dependency (default
            ``Budget()``: retries <= 20 % of calls + 10 a second, over 10 s); a retry over
            budget is not made. ``None`` turns it off.
        max_retry_after: the longest ``retry_after`` hint honoured, seconds or a
            ``timedelta`` (finite, ``> 0``; default 300, DESIGN.md's Retry-After cap). Longer
            hints, ``inf`` included, wait this long.

    An exception with a numeric ``retry_after`` attribute (seconds, as HTTP 429/503 carry)
    makes the wait at least ``min(retry_after, max_retry_after)``. Hints that are not a
    number > 0 (negative, NaN, ``bool``, strings) are ignored. Without the cap a server
    answering ``Retry-After: 1e9``, or a client bug setting ``inf``, would park the call
    forever when no total deadline is set.

    Raises:
        TypeError, ValueError: an argument has the wrong type or is out of range.
    """

    attempts: int = attrs.field(default=3, validator=integer(ge=1))
    backoff: _backoff.Backoff = attrs.field(
        factory=lambda: _backoff.full(_backoff.exponential()), validator=_check_backoff
    )
    retry_on: ErrorFilter = attrs.field(default=DEFAULT_RETRY_ON, converter=_retry_on)
    retry_on_result: ResultPredicate | None = attrs.field(
        default=None, validator=_check_result_predicate
    )
    max_retry_after: float = attrs.field(default=300.0, converter=seconds, validator=number(gt=0))
    budget: Budget | None = attrs.field(factory=Budget, validator=_check_budget)

    def should_retry(self, exc: Exception, kind: ErrorKind | None = None) -> bool:
        """
        Whether *exc* is worth another attempt (attempts left are the caller's business).

        Args:
            exc: the exception the attempt raised.
            kind: its kind when the caller has classified it already (with the user's
                ``Classifier``); ``None``: ``retry_on`` classifies it if it needs to.

        Raises:
            TypeError: a ``retry_on`` predicate returned an awaitable.
            Exception: whatever a ``retry_on`` predicate raises, unchanged.
        """
        return self.retry_on(exc, kind)

    def delay(
        self,
        attempt: int,
        rng: random.Random,
        exc: BaseException | None = None,
        *,
        retry_after: float | None = None,
    ) -> float:
        """
        Seconds to wait before retry number *attempt* (1-based).

        ``max(backoff(attempt, rng), min(hint, max_retry_after))``, never negative. The hint
        is *retry_after* when given (the runtime reads it from the exception's headers with
        :func:`policies.retry_after`), else the exception's numeric ``retry_after``
        attribute; hints that are not a number > 0 are ignored.
        """
        wait = self.backoff(attempt, rng)
        if not wait >= 0.0:  # also catches NaN from a user's backoff
            wait = 0.0
        if retry_after is not None:
            wait = max(wait, _usable(retry_after, self.max_retry_after))
        elif exc is not None:
            wait = max(wait, _retry_after(exc, self.max_retry_after))
        return wait

    def after_failure(
        self,
        exc: Exception,
        kind: ErrorKind | None,
        attempt: int,
        rng: random.Random,
        *,
        now: float,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
        retry_after: float | None = None,
    ) -> float | Stop:
        """
        The decision after attempt number *attempt* (1-based) failed with *exc*: the seconds
        to wait before the next attempt, or why there is none. In order: an attempt must be
        left and *exc* worth one (:data:`Stop.FINAL`); the *budget* must allow it (and then
        counts it: :data:`Stop.BUDGET`); the backoff (:meth:`delay`, *retry_after* being the
        hint the runtime read) must end before the *deadline* (:data:`Stop.DEADLINE`).

        The runtime adds what needs its knowledge: ringfence's own rejections and errors it
        knows are final are never retried; cancellation is never seen here.

        Raises:
            Exception: whatever a ``retry_on`` predicate raises, unchanged.
        """
        if attempt >= self.attempts or not self.retry_on(exc, kind):
            return Stop.FINAL
        return self._next(attempt, rng, exc, now, deadline, budget, retry_after)

    def after_result(
        self,
        result: object,
        attempt: int,
        rng: random.Random,
        *,
        now: float,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
    ) -> float | Stop:
        """
        The decision after attempt *attempt* returned *result*: a delay when
        ``retry_on_result`` wants it tried again (and the budget and the deadline allow), else
        why not, as :meth:`after_failure` decides.

        Raises:
            Exception: whatever ``retry_on_result`` raises, unchanged.
        """
        predicate = self.retry_on_result
        if predicate is None or attempt >= self.attempts or not predicate(result):
            return Stop.FINAL
        return self._next(attempt, rng, None, now, deadline, budget, None)

    def _next(
        self,
        attempt: int,
        rng: random.Random,
        exc: BaseException | None,
        now: float,
        deadline: float | None,
        budget: RetryBudget | None,
        retry_after: float | None,
    ) -> float | Stop:
        if budget is not None and not budget.try_retry(now):
            return Stop.BUDGET
        delay = self.delay(attempt, rng, exc, retry_after=retry_after)
        if deadline is not None and now + delay >= deadline:
            return Stop.DEADLINE
        return delay
