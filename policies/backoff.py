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
- :func:`decorrelated` — the waits of Polly's ``DecorrelatedJitterBackoffV2``, see its docstring.

All schedules saturate: attempt 10,000 gives ``cap``, never an ``OverflowError``
(stamina 26.1.0 and Polly #2163 shipped the same fix).
"""

from __future__ import annotations

import math
import random
import sys
from typing import Final, Protocol, final, runtime_checkable

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

_FLOAT_MAX: Final = sys.float_info.max


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
        inner = self.inner(attempt, rng)
        wait = rng.uniform(0.0, inner)
        return wait if wait == wait else inner  # NaN: inf * 0.0, an infinite wait stays one

    def __repr__(self) -> str:
        return f"backoff.full({self.inner!r})"


@final
@attrs.frozen(repr=False)
class _Proportional:
    inner: Backoff
    ratio: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        inner = self.inner(attempt, rng)
        wait = inner * rng.uniform(1.0 - self.ratio, 1.0 + self.ratio)
        if wait <= _FLOAT_MAX:
            return wait
        # Overflow (a finite wait times up to 2 saturates at the largest float), or an
        # infinite inner wait (times 0.0 is NaN): it stays the inner wait.
        return _FLOAT_MAX if inner <= _FLOAT_MAX else inner

    def __repr__(self) -> str:
        return f"backoff.proportional({self.inner!r}, ratio={self.ratio!r})"


# Polly's DecorrelatedJitterBackoffV2 (Polly.Core RetryHelper; from Polly.Contrib.WaitAndRetry,
# by George Bukazhin, after George Pantazes' analysis of AWS's "decorrelated jitter"). With a
# 0-based retry index a and U uniform in [0, 1), Polly computes t = a + U and
# next = 2**t * tanh(sqrt(4 t)), waits (next - prev) / 1.4 * base and keeps prev = next for the
# following retry (prev = 0 before the first). Since t grows by at least 0 and at most 2 per
# retry and the curve increases, every wait is positive; the first spans [0, 1.38) x base with
# median 0.90 x base, and the median roughly doubles per retry after that.
_P_FACTOR = 4.0  # the curve's tanh(sqrt(p t)) factor
_RP_SCALING = 1.0 / 1.4  # Polly: "so the median is the given base delay" (roughly; see above)
# math.pow(2.0, t) raises OverflowError from t = 1024 on, where C#'s Math.Pow returns infinity
# and Polly returns the cap (Polly #2163). Below 1024 the curve is finite (2**1023.99 < max).
_T_OVERFLOW = 1024.0


def _curve(t: float) -> float:
    if t >= _T_OVERFLOW:
        return math.inf
    return math.pow(2.0, t) * math.tanh(math.sqrt(_P_FACTOR * t))


@final
@attrs.frozen(repr=False)
class _Decorrelated:
    median: float
    cap: float

    def __call__(self, attempt: int, rng: random.Random, /) -> float:
        # Polly carries prev from the previous retry's draw; this callable has no state between
        # calls (the runtime shares one rng among every caller), so it draws that previous U
        # here, first, then this retry's U. Polly's wait before retry n depends only on those
        # two draws, so each wait has exactly Polly's distribution for its retry, and equals
        # Polly's for the same two draws. What differs is the joint law: Polly's waits in one
        # call telescope (their sum before retry n is f(t_n) / 1.4 * base); ours are drawn
        # independently of each other.
        index = attempt - 1  # Polly's retry index is 0-based
        previous = _curve(index - 1 + rng.random()) if index > 0 else 0.0
        current = _curve(index + rng.random())
        if math.isinf(current):
            return self.cap
        # Polly converts to 100 ns ticks and clamps at TimeSpan.MaxValue; a float in seconds
        # needs neither (the product saturates to inf, which min() turns into the cap).
        return min(self.cap, (current - previous) * _RP_SCALING * self.median)

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
    Decorrelated jitter: the waits of Polly's ``DecorrelatedJitterBackoffV2``.

    With ``f(t) = 2**t * tanh(sqrt(4 t))`` and ``U, U'`` uniform in ``[0, 1)``, the wait before
    retry ``n`` is ``min(cap, (f(n - 1 + U) - f(n - 2 + U')) / 1.4 * median)``, the subtracted
    term ``0`` for ``n = 1``. The first wait lies in ``[0, 1.38) * median`` (its median is
    ``0.90 * median``: Polly calls *median* "the median delay to target"), and the median wait
    roughly doubles per retry, while callers retrying together spread out.

    Each wait has exactly the distribution Polly's has for that retry, and equals Polly's
    for the same two random draws. Polly also carries ``U'`` over from the previous retry, so
    its waits within one call add up to ``f(n - 1 + U) / 1.4 * median``; here the two draws
    are made afresh for every wait (a backoff is a function of ``(attempt, rng)``), so
    successive waits are independent.

    Args:
        median: Polly's base delay, seconds (``> 0``).
        cap: the longest wait, seconds (``> 0``). From retry 1025 on, where Polly's curve
            overflows (Polly #2163), every wait is *cap*, as Polly's.

    Raises:
        TypeError, ValueError: an argument is not a number ``> 0``.
    """
    check_number("median", median, gt=0)
    check_number("cap", cap, gt=0)
    return _Decorrelated(float(median), float(cap))
