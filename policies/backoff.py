"""
Backoff schedules: how long to wait before retry number *attempt*.

A backoff is any callable ``(attempt, rng) -> seconds``. ``attempt`` is 1 for the wait before
the second try, 2 before the third, and so on. ``rng`` is the ``random.Random`` the supervisor
injects (seed it for reproducible schedules); a backoff never touches the global ``random``
module, the way Polly passes its randomizer in.

Deterministic schedules:

- :func:`constant` — ``delay``
- :func:`linear` — ``min(cap, start + step * (attempt - 1))``
- :func:`exponential` — ``min(cap, base * factor ** (attempt - 1))``

Jitter, wrapping any schedule (or, for decorrelated, standing alone):

- :func:`full` — ``uniform(0, inner(attempt))`` (AWS "full jitter")
- :func:`proportional` — ``inner(attempt) * uniform(1 - ratio, 1 + ratio)``
- :func:`decorrelated` — Polly's ``DecorrelatedJitterBackoffV2`` formula, see its docstring.

All schedules saturate: attempt 10,000 gives ``cap``, never an ``OverflowError``
(stamina 26.1.0 and Polly #2163 shipped the same fix).
"""

from __future__ import annotations

import math
import random
from typing import Protocol, final, runtime_checkable

import attrs

from ._math import grow
from ._validators import check_number

__all__ = (
    "Backoff",
    "constant",
    "linear",
    "exponential",
    "full",
    "proportional",
    "decorrelated",
)


@runtime_checkable
class Backoff(Protocol):
    """A backoff schedule: seconds to wait before retry number ``attempt`` (1-based)."""

    def __call__(self, attempt: int, rng: random.Random, /) -> float: ...


@final
@attrs.frozen(repr=False)
class _Constant:
    delay: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        return self.delay

    def __repr__(self) -> str:
        return f"backoff.constant({self.delay!r})"


@final
@attrs.frozen(repr=False)
class _Linear:
    start: float
    step: float
    cap: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        # `attempt` is an int, so the product cannot overflow; min() does the saturation.
        return min(self.cap, self.start + self.step * (attempt - 1))

    def __repr__(self) -> str:
        return f"backoff.linear(start={self.start!r}, step={self.step!r}, cap={self.cap!r})"


@final
@attrs.frozen(repr=False)
class _Exponential:
    base: float
    factor: float
    cap: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        return grow(self.base, self.factor, attempt - 1, self.cap)

    def __repr__(self) -> str:
        return f"backoff.exponential(base={self.base!r}, factor={self.factor!r}, cap={self.cap!r})"


@final
@attrs.frozen(repr=False)
class _Full:
    inner: Backoff

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        return rng.uniform(0.0, self.inner(attempt, rng))

    def __repr__(self) -> str:
        return f"backoff.full({self.inner!r})"


@final
@attrs.frozen(repr=False)
class _Proportional:
    inner: Backoff
    ratio: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        return self.inner(attempt, rng) * rng.uniform(1.0 - self.ratio, 1.0 + self.ratio)

    def __repr__(self) -> str:
        return f"backoff.proportional({self.inner!r}, ratio={self.ratio!r})"


# Polly's DecorrelatedJitterBackoffV2 constants (Polly.Contrib.WaitAndRetry, credited there to
# George Pantazes' analysis of AWS's "decorrelated jitter"): the curve 2**t * tanh(sqrt(p * t))
# with p = 4.0 and the scale factor rp = 1 / 1.4 keeps the median delay growing about twofold
# per attempt while successive delays stay decorrelated.
_P_FACTOR = 4.0
_RP_SCALING = 1.0 / 1.4


def _curve(t: float) -> float:
    return math.pow(2.0, t) * math.tanh(math.sqrt(_P_FACTOR * t))


@final
@attrs.frozen(repr=False)
class _Decorrelated:
    median: float
    cap: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        # Polly keeps the previous t between attempts; we draw it afresh so the callable
        # stays a pure function of (attempt, rng). Both t values are uniform inside their
        # unit interval, so the difference is positive and has the same shape.
        if attempt > 1000:  # 2.0 ** 1000 is finite but already far past any cap
            return self.cap
        t = attempt + rng.random()
        previous = _curve(attempt - 1 + rng.random()) if attempt > 1 else 0.0
        delay = (_curve(t) - previous) * self.median / (_RP_SCALING * 4.0)
        return min(self.cap, delay)

    def __repr__(self) -> str:
        return f"backoff.decorrelated(median={self.median!r}, cap={self.cap!r})"


def constant(delay: float) -> Backoff:
    """
    Wait the same *delay* seconds before every retry.

    Raises:
        TypeError, ValueError: *delay* is not a number ``>= 0``.
    """
    check_number("delay", delay, ge=0)
    return _Constant(float(delay))


def linear(start: float, step: float, cap: float = math.inf) -> Backoff:
    """
    Wait ``min(cap, start + step * (attempt - 1))`` seconds.

    Raises:
        TypeError, ValueError: an argument is not a number ``>= 0``.
    """
    check_number("start", start, ge=0)
    check_number("step", step, ge=0)
    check_number("cap", cap, ge=0, allow_inf=True)
    return _Linear(float(start), float(step), float(cap))


def exponential(base: float = 0.2, factor: float = 2.0, cap: float = 10.0) -> Backoff:
    """
    Wait ``min(cap, base * factor ** (attempt - 1))`` seconds; saturates at *cap*.

    Args:
        base: the first wait, seconds.
        factor: growth per attempt, ``>= 1``.
        cap: the longest wait, seconds.

    Raises:
        TypeError, ValueError: an argument is out of range.
    """
    check_number("base", base, ge=0)
    check_number("factor", factor, ge=1)
    check_number("cap", cap, ge=0)
    return _Exponential(float(base), float(factor), float(cap))


def _check_backoff(inner: object) -> Backoff:
    if not callable(inner):
        msg = f"'inner' must be a backoff callable (attempt, rng) -> seconds, got {inner!r}"
        raise TypeError(msg)
    return inner


def full(inner: Backoff) -> Backoff:
    """
    Full jitter: ``uniform(0, inner(attempt, rng))``.

    Spreads a herd of retrying callers evenly over the whole interval (AWS Architecture Blog,
    "Exponential Backoff And Jitter", 2015).
    """
    return _Full(_check_backoff(inner))


def proportional(inner: Backoff, ratio: float = 0.2) -> Backoff:
    """
    Proportional jitter: ``inner(attempt, rng) * uniform(1 - ratio, 1 + ratio)``.

    Raises:
        TypeError, ValueError: *ratio* is not a number in ``[0, 1]``.
    """
    check_number("ratio", ratio, ge=0, le=1)
    return _Proportional(_check_backoff(inner), float(ratio))


def decorrelated(median: float = 1.0, cap: float = 60.0) -> Backoff:
    """
    Decorrelated jitter after Polly's ``DecorrelatedJitterBackoffV2``.

    With ``t = attempt + U(0, 1)`` and ``f(t) = 2**t * tanh(sqrt(4 t))``, the wait is
    ``(f(t) - f(t')) * median / (4 / 1.4)`` where ``t' = attempt - 1 + U(0, 1)`` (0 for the
    first retry), capped at *cap*. The median wait starts near *median* and roughly doubles
    per retry, but successive waits are decorrelated, so a herd does not retry in lockstep.

    Raises:
        TypeError, ValueError: an argument is not a number ``> 0``.
    """
    check_number("median", median, gt=0)
    check_number("cap", cap, gt=0)
    return _Decorrelated(float(median), float(cap))
