"""
Hedging: when an attempt has not answered after a delay, start another one beside it; the
first success wins ("The Tail at Scale", Dean and Barroso; Polly's ``HedgingStrategy``,
failsafe-go's ``hedgepolicy``).

The policy is a delay and a count. The delay is either fixed (seconds, or a ``timedelta``)
or a :class:`Quantile` of the dependency's own latencies (its :class:`~policies.window.
LatencyWindow`), clamped to ``[floor, cap]``, so that only the slow tail is hedged: with
``Hedge.quantile(0.95)`` about one call in twenty gets a second attempt.

What is pure here: the delay a call waits before hedging (:meth:`Hedge.delay_for`, from a
window), and :class:`HedgeDelay`, the small cache the runtime keeps per dependency so the
window is sorted once per :data:`REFRESH` latencies, not once per call. Admission of a hedge
(breaker, pause, rate limit, bulkhead, retry budget) and the race itself are the runtime's
(``supervisor/_call.py``).
"""

from __future__ import annotations

import datetime
from typing import Final, final

import attrs

from ._validators import _Validator, check_number, integer, seconds
from .window import LatencyWindow

__all__ = ("MIN_SAMPLES", "REFRESH", "Hedge", "HedgeDelay", "Quantile")

#: Latencies a :class:`Quantile` needs before it trusts them; until then the delay is ``cap``.
MIN_SAMPLES: Final = 20
#: A :class:`HedgeDelay` reads the window again after this many new latencies.
REFRESH: Final = 64


def _quantile_q(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    name = attribute.alias or attribute.name
    check_number(name, value, gt=0)
    if value >= 1:
        msg = f"{name!r} must be a number > 0 and < 1, got {value!r}"
        raise ValueError(msg)


def _positive_seconds(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_number(attribute.alias or attribute.name, value, gt=0)


@final
@attrs.frozen(kw_only=True)
class Quantile:
    """
    A hedge delay read from the dependency's latencies: their *q*-quantile (nearest rank),
    clamped to ``[floor, cap]``. Build it with :meth:`Hedge.quantile`.

    Until :data:`MIN_SAMPLES` latencies were measured the delay is *cap*: a dependency that
    nobody has measured yet is hedged only when it is very slow.

    Raises:
        TypeError, ValueError: *q* is not a number in ``(0, 1)``; *floor* or *cap* is not a
            finite number ``> 0`` (or a ``timedelta``); ``floor > cap``.
    """

    q: float = attrs.field(validator=_quantile_q)
    floor: float = attrs.field(default=0.001, converter=seconds, validator=_positive_seconds)
    cap: float = attrs.field(default=10.0, converter=seconds, validator=_positive_seconds)

    def __attrs_post_init__(self) -> None:
        if self.floor > self.cap:
            msg = f"'floor' must be <= 'cap', got floor={self.floor!r} > cap={self.cap!r}"
            raise ValueError(msg)

    def of(self, window: LatencyWindow) -> float:
        """The delay for the latencies in *window* now."""
        if window.count < MIN_SAMPLES:
            return self.cap
        measured = window.quantile(self.q)
        if measured is None:  # pragma: no cover - count >= MIN_SAMPLES holds samples
            return self.cap
        return min(self.cap, max(self.floor, measured))


def _delay(value: float | datetime.timedelta | Quantile) -> float | Quantile:
    if isinstance(value, Quantile):
        return value
    return seconds(value)


def _check_delay_value(name: str, value: object) -> None:
    if isinstance(value, Quantile):
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = (
            f"{name!r} must be seconds (a number > 0 or a timedelta) or Hedge.quantile(...),"
            f" got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)
    check_number(name, value, gt=0)


_check_delay: Final = _Validator(_check_delay_value)


@final
@attrs.frozen(kw_only=True)
class Hedge:
    """
    Race a slow attempt: after *delay* without an answer, start another attempt beside it,
    up to *max_hedges* more for the same call; the first success wins and the others are
    cancelled (they count nothing).

    Args:
        delay: seconds (a finite number ``> 0``, or a ``timedelta``) an attempt may run
            before a hedge starts; or :meth:`Hedge.quantile` ``(q, floor=, cap=)``: the
            dependency's observed *q*-quantile latency, clamped.
        max_hedges: hedges a call may start beside its attempt, an int ``>= 1``; each one
            starts *delay* after the previous one.

    Raises:
        TypeError, ValueError: naming the argument and the value.
    """

    delay: float | Quantile = attrs.field(default=0.5, converter=_delay, validator=_check_delay)
    max_hedges: int = attrs.field(default=1, validator=integer(ge=1))

    @staticmethod
    def quantile(
        q: float,
        *,
        floor: float | datetime.timedelta = 0.001,
        cap: float | datetime.timedelta = 10.0,
    ) -> Quantile:
        """A delay that follows the dependency's latencies: their *q*-quantile, clamped."""
        return Quantile(q=q, floor=floor, cap=cap)

    def delay_for(self, window: LatencyWindow) -> float:
        """Seconds an attempt may run before a hedge starts, given the latencies in *window*."""
        delay = self.delay
        if isinstance(delay, Quantile):
            return delay.of(window)
        return delay

    def machine(self) -> HedgeDelay:
        """The per-dependency cache of :meth:`delay_for` the runtime keeps."""
        return HedgeDelay(self)


@final
class HedgeDelay:
    """
    :meth:`Hedge.delay_for` with the window read once per :data:`REFRESH` new latencies (a
    quantile sorts the window: about a hundred microseconds for 1024 latencies). One owner
    (the dependency's actor) calls it.
    """

    __slots__ = ("_at", "_delay", "config")

    def __init__(self, config: Hedge) -> None:
        self.config = config
        self._at = -REFRESH  # window.count when the delay was read; stale at first
        self._delay = 0.0

    def delay(self, window: LatencyWindow) -> float:
        """The delay now: read again when the window gained :data:`REFRESH` latencies."""
        config = self.config
        if not isinstance(config.delay, Quantile):
            return config.delay
        count = window.count
        if count - self._at >= REFRESH or self._at < MIN_SAMPLES:
            self._delay = config.delay_for(window)
            self._at = count
        return self._delay
