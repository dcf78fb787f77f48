"""
attrs validators shared by the policy classes.

Every message names the argument, the rule and the value received, so a wrong configuration is
fixed from the traceback alone: ``'attempts' must be an int >= 1, got 0``. Wrong type raises
``TypeError``; a value of the right type outside its range raises ``ValueError``. ``bool`` is
rejected where a number is expected, although it is an ``int`` subclass: ``attempts=True`` is
always a mistake.

Durations are seconds everywhere; :func:`seconds` and :func:`optional_seconds` are the
converters that also accept a ``datetime.timedelta`` (stamina's habit), so one field written
``attempt=timedelta(seconds=2)`` is validated, and reads back, as ``2.0``.

Finite arguments can still give quantities that are not: ``RateLimit(1e-300, per=1e300)``
spends ``per / rate = inf`` seconds per unit, and ``Breaker(sampling=5e-324)`` has window
slices ``5e-324 / 10 = 0.0`` wide. :func:`check_derived` refuses those at construction, with
the expression, what it means, the arguments and the result: ``'per' / 'rate' (seconds per
unit of cost) must be a finite number > 0, got 1e+300 / 1e-300 = inf`` (issue 16, item 3,
defect 9).
"""

from __future__ import annotations

import datetime
import math
import sys
from collections.abc import Callable
from typing import Final, TypeVar, final

import attrs

__all__ = (
    "check_derived",
    "check_number",
    "integer",
    "number",
    "optional_number",
    "optional_seconds",
    "seconds",
)

_T = TypeVar("_T")
_FLOAT_MAX: Final = sys.float_info.max


@final
class _Validator:
    """An attrs validator; generic in the field's type so mypy accepts it on any field."""

    __slots__ = ("_check",)

    def __init__(self, check: Callable[[str, object], None]) -> None:
        self._check = check

    def __call__(self, _inst: object, attribute: attrs.Attribute[_T], value: _T) -> None:
        self._check(attribute.alias or attribute.name, value)


def _bounds(ge: float | None, gt: float | None, le: float | None) -> str:
    """The bounds as a message fragment: ``" > 0 and <= 1"``, or ``""`` for none."""
    rules = []
    if ge is not None:
        rules.append(f" >= {ge:g}")
    if gt is not None:
        rules.append(f" > {gt:g}")
    if le is not None:
        rules.append(f" <= {le:g}")
    return " and".join(rules)


def _check(
    name: str,
    value: object,
    *,
    kind: str,
    types: tuple[type, ...],
    ge: float | None,
    gt: float | None,
    le: float | None,
    allow_inf: bool,
) -> None:
    bounds = _bounds(ge, gt, le)
    rule = kind + bounds
    if isinstance(value, bool) or not isinstance(value, types):
        msg = f"{name!r} must be {rule}, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    assert isinstance(value, int | float)  # narrowed above; for mypy
    if isinstance(value, int):
        # An int past the largest float cannot be counted in seconds or units (math.isnan
        # raised OverflowError on it); an int count (attempts, slots) may be any size.
        if kind != "an int" and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
            msg = f"{name!r} must be a finite number{bounds}, got {value!r}"
            raise ValueError(msg)
    elif math.isnan(value) or (math.isinf(value) and not allow_inf):
        # Only floats get here, so the kind is always "a number" (issue 8 fixed the message
        # "must be a finite a number", made by putting "finite" before the kind's article).
        msg = f"{name!r} must be a finite number{bounds}, got {value!r}"
        raise ValueError(msg)
    if (
        (ge is not None and value < ge)
        or (gt is not None and value <= gt)
        or (le is not None and value > le)
    ):
        msg = f"{name!r} must be {rule}, got {value!r}"
        raise ValueError(msg)


def number(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_inf: bool = False,
) -> _Validator:
    """Validate an ``int`` or ``float`` (never ``bool``) within bounds; seconds usually."""

    def check(name: str, value: object) -> None:
        check_number(name, value, ge=ge, gt=gt, le=le, allow_inf=allow_inf)

    return _Validator(check)


def optional_number(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_inf: bool = False,
) -> _Validator:
    """Like :func:`number`, but ``None`` (meaning "not set") is accepted."""

    def check(name: str, value: object) -> None:
        if value is not None:
            check_number(name, value, ge=ge, gt=gt, le=le, allow_inf=allow_inf)

    return _Validator(check)


def integer(*, ge: int | None = None, optional: bool = False) -> _Validator:
    """Validate an ``int`` (never ``bool``) ``>= ge``; ``None`` passes when *optional*."""

    def check(name: str, value: object) -> None:
        if optional and value is None:
            return
        _check(name, value, kind="an int", types=(int,), ge=ge, gt=None, le=None, allow_inf=False)

    return _Validator(check)


def check_number(
    name: str,
    value: object,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    allow_inf: bool = False,
) -> None:
    """Validate a factory argument (``backoff.exponential(base=...)``) the same way."""
    _check(
        name, value, kind="a number", types=(int, float), ge=ge, gt=gt, le=le, allow_inf=allow_inf
    )


def check_derived(
    expression: str,
    value: float,
    operands: str,
    *,
    gt: float | None = 0.0,
    le: float | None = None,
) -> None:
    """
    Validate a quantity computed from arguments that each passed their own check.

    Args:
        expression: the computation and what it means: ``"'per' / 'rate' (seconds per unit
            of cost)"``.
        value: its result, as the machine will compute it.
        operands: the computation with the values given: ``"1e+300 / 1e-300"``.
        gt, le: the bounds besides being finite (``gt=0`` by default; ``None``: no bound).

    Raises:
        ValueError: *value* is not finite (an overflow, or NaN) or out of bounds (an
            underflow to 0, say); the message names all of the above.
    """
    # A comparison, not math.isfinite: an int result past the largest float (int arguments
    # multiplied) is as unusable as inf, and math.isfinite would raise OverflowError on it.
    finite = -_FLOAT_MAX <= value <= _FLOAT_MAX  # False for NaN too
    if finite and (gt is None or value > gt) and (le is None or value <= le):
        return
    msg = f"{expression} must be a finite number{_bounds(None, gt, le)}, got {operands} = {value!r}"
    raise ValueError(msg)


def seconds(value: float | datetime.timedelta) -> float:
    """
    An attrs converter: a ``timedelta`` becomes its seconds; anything else passes unchanged.

    Only a ``timedelta`` is converted. Every other value reaches the field's validator as it
    was given, so ``'attempt' must be a number > 0, got '5' of type str`` still names what the
    user wrote. A negative ``timedelta`` becomes a negative number and fails the same way.
    """
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def optional_seconds(value: float | datetime.timedelta | None) -> float | None:
    """Like :func:`seconds`, for fields where ``None`` means "not set"."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value
