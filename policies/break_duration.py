"""
Break durations: how long an opened breaker stays open before it lets a probe through.

A break duration is any callable that receives one frozen :class:`BreakHistory` and returns
seconds. One record rather than positional arguments, as Polly's
``BreakDurationGeneratorArguments`` does, so fields can be added without breaking anyone.

- a number ``n`` means :func:`constant` ``(n)``;
- :func:`constant` — ``seconds``;
- :func:`linear` — ``min(cap, start + step * (openings - 1))``;
- :func:`exponential` — ``min(cap, start * factor ** (openings - 1))``;
- :func:`adaptive` — remembers the previous break across closings: grows by *factor* when the
  dependency fails again soon after recovering, shrinks by *factor* for each *healthy_after*
  seconds it stayed closed.

``openings`` is 1 for the first opening since the breaker last closed, 2 when the first
half-open probe fails, and so on; closing resets it. Every schedule saturates at ``cap``:
opening 10,000 returns ``cap``, never an ``OverflowError``.
"""

from __future__ import annotations

import math
from typing import Protocol, final, runtime_checkable

import attrs

from ._math import grow, shrink
from ._validators import check_number, integer, optional_number

__all__ = (
    "BreakDuration",
    "BreakHistory",
    "constant",
    "linear",
    "exponential",
    "adaptive",
    "as_break_duration",
)


@final
@attrs.frozen(kw_only=True)
class BreakHistory:
    """
    What a break-duration callable knows when the breaker opens. All times are seconds.

    Attributes:
        openings: 1 for the first opening since the breaker last closed; +1 for each failed
            half-open probe round. Closing resets it.
        previous: the duration of the latest earlier opening, across closings (``None`` before
            the first opening ever).
        closed_for: how long the breaker had been closed before this opening; ``None`` when it
            reopens from half-open (a probe failed). On the first opening ever it is the time
            since the breaker was created.
    """

    openings: int = attrs.field(validator=integer(ge=1))
    previous: float | None = attrs.field(default=None, validator=optional_number(ge=0))
    closed_for: float | None = attrs.field(
        default=None, validator=optional_number(ge=0, allow_inf=True)
    )


@runtime_checkable
class BreakDuration(Protocol):
    """Seconds the breaker stays open, given the history of its openings."""

    def __call__(self, history: BreakHistory, /) -> float: ...


@final
@attrs.frozen(repr=False)
class _Constant:
    seconds: float

    def __call__(self, history: BreakHistory, /) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return f"break_duration.constant({self.seconds!r})"


@final
@attrs.frozen(repr=False)
class _Linear:
    start: float
    step: float
    cap: float

    def __call__(self, history: BreakHistory, /) -> float:
        return min(self.cap, self.start + self.step * (history.openings - 1))

    def __repr__(self) -> str:
        return f"break_duration.linear({self.start!r}, step={self.step!r}, cap={self.cap!r})"


@final
@attrs.frozen(repr=False)
class _Exponential:
    start: float
    factor: float
    cap: float

    def __call__(self, history: BreakHistory, /) -> float:
        return grow(self.start, self.factor, history.openings - 1, self.cap)

    def __repr__(self) -> str:
        return (
            f"break_duration.exponential({self.start!r}, factor={self.factor!r}, cap={self.cap!r})"
        )


@final
@attrs.frozen(repr=False)
class _Adaptive:
    start: float
    factor: float
    cap: float
    healthy_after: float

    def __call__(self, history: BreakHistory, /) -> float:
        previous = history.previous
        if previous is None:
            return min(self.cap, self.start)
        if history.closed_for is None or history.closed_for < self.healthy_after:
            # A probe failed, or the dependency fell over again soon after recovering:
            # the last break was too short.
            return max(self.start, min(self.cap, previous * self.factor))
        # Sustained health: shrink once per full `healthy_after` period spent closed.
        periods = history.closed_for / self.healthy_after
        if math.isinf(periods):
            return self.start
        return min(self.cap, shrink(previous, self.factor, int(periods), self.start))

    def __repr__(self) -> str:
        return (
            f"break_duration.adaptive({self.start!r}, factor={self.factor!r}, cap={self.cap!r},"
            f" healthy_after={self.healthy_after!r})"
        )


def constant(seconds: float) -> BreakDuration:
    """
    Always break for *seconds*.

    Raises:
        TypeError, ValueError: *seconds* is not a number ``>= 0``.
    """
    check_number("seconds", seconds, ge=0)
    return _Constant(float(seconds))


def linear(start: float, step: float, cap: float = 300.0) -> BreakDuration:
    """
    Break for ``min(cap, start + step * (openings - 1))`` seconds.

    Raises:
        TypeError, ValueError: an argument is not a number ``>= 0``.
    """
    check_number("start", start, ge=0)
    check_number("step", step, ge=0)
    check_number("cap", cap, ge=0)
    return _Linear(float(start), float(step), float(cap))


def exponential(start: float, factor: float = 2.0, cap: float = 300.0) -> BreakDuration:
    """
    Break for ``min(cap, start * factor ** (openings - 1))`` seconds.

    Raises:
        TypeError, ValueError: *start* or *cap* is not ``>= 0``, or *factor* not ``>= 1``.
    """
    check_number("start", start, ge=0)
    check_number("factor", factor, ge=1)
    check_number("cap", cap, ge=0)
    return _Exponential(float(start), float(factor), float(cap))


def adaptive(
    start: float = 5.0, factor: float = 2.0, cap: float = 300.0, healthy_after: float = 60.0
) -> BreakDuration:
    """
    A break duration that learns from the dependency's history.

    - first opening ever: *start*;
    - reopening after a failed probe, or after less than *healthy_after* seconds closed:
      ``previous * factor`` (the last break was too short);
    - reopening after ``k * healthy_after`` seconds closed: ``previous / factor ** k``
      (sustained health earns a shorter break).

    The result always lies in ``[start, cap]``.

    Raises:
        TypeError, ValueError: *start* not ``>= 0``, *factor* not ``>= 1``, *cap* below
            *start*, or *healthy_after* not ``> 0``.
    """
    check_number("start", start, ge=0)
    check_number("factor", factor, ge=1)
    check_number("cap", cap, ge=start)
    check_number("healthy_after", healthy_after, gt=0)
    return _Adaptive(float(start), float(factor), float(cap), float(healthy_after))


def as_break_duration(value: float | BreakDuration) -> BreakDuration:
    """
    Normalise ``Breaker(break_duration=...)``: a number becomes :func:`constant`.

    Raises:
        TypeError: *value* is neither a number nor a callable.
        ValueError: *value* is a negative or non-finite number.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        check_number("break_duration", value, ge=0)
        return _Constant(float(value))
    if callable(value):
        return value
    msg = (
        "'break_duration' must be a number of seconds or a callable (BreakHistory) -> seconds,"
        f" got {value!r} of type {type(value).__name__}"
    )
    raise TypeError(msg)
