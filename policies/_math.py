"""
Saturating arithmetic for schedules: huge attempt or opening numbers clamp, never overflow.

``2.0 ** 10_000`` raises ``OverflowError``; stamina (26.1.0) and Polly (#2163) both shipped
fixes once attempt numbers passed 1024. We compare exponents in log space before computing.
"""

from __future__ import annotations

import math

__all__ = ("grow", "shrink")

# log(sys.float_info.max) is about 709.8: past this, factor ** exponent is not a finite float.
_LOG_FLOAT_MAX = 709.0


def grow(start: float, factor: float, exponent: int, cap: float) -> float:
    """``min(cap, start * factor ** exponent)`` for ``start, cap >= 0`` and ``factor >= 1``."""
    if start <= 0.0 or cap <= 0.0:
        return 0.0
    if factor == 1.0 or exponent <= 0:
        return min(cap, start)
    if cap <= start:
        # start * factor ** exponent >= start >= cap. Checked before the logarithm: for a
        # tiny cap, cap / start underflows to 0.0 and math.log(0.0) raises ValueError.
        return cap
    if exponent * math.log(factor) >= min(math.log(cap / start), _LOG_FLOAT_MAX):
        return cap
    return min(cap, start * factor**exponent)


def shrink(value: float, factor: float, exponent: int, floor: float) -> float:
    """``max(floor, value / factor ** exponent)`` for ``value, floor >= 0`` and ``factor >= 1``."""
    if factor == 1.0 or exponent <= 0 or value <= floor:
        return max(floor, value)
    log_divisor = exponent * math.log(factor)
    if log_divisor >= _LOG_FLOAT_MAX or (floor > 0 and log_divisor >= math.log(value / floor)):
        return floor
    return max(floor, value / factor**exponent)
