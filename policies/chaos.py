"""
Fault injection (Polly's Simmy): a share of a dependency's calls get an error, a delay, or a
substitute result instead of (or before) the real call, so a staging deploy can rehearse an
outage without code changes.

The policy is a frozen record and a draw: :meth:`Chaos.draw` takes the supervisor's
``random.Random`` (seedable, so a test's injections are reproducible). The runtime applies it
by wrapping the dependency's function when the policy is configured (at ``register`` or
``reconfigure``): a dependency without it runs exactly as before, with nothing checked per call.
"""

from __future__ import annotations

import builtins
import enum
import random
from collections.abc import Callable
from typing import Final, TypeAlias, cast, final

import attrs

from ._validators import number, optional_number, optional_seconds

__all__ = ("Chaos", "ChaosError", "NO_RESULT")


class _NoResult(enum.Enum):
    NO_RESULT = enum.auto()


#: ``Chaos(result=...)`` not given: the call is not answered by a substitute.
NO_RESULT: Final = _NoResult.NO_RESULT

#: What ``error=`` takes: an exception instance (raised as is), an exception type (called
#: with no argument), or a factory ``() -> exception``; a file names a builtin type.
ChaosError: TypeAlias = BaseException | type[BaseException] | Callable[[], BaseException]


def _error(value: object) -> ChaosError | None:
    """A builtin exception type named by a string (from a file), else *value* unchanged."""
    if isinstance(value, str):
        found = getattr(builtins, value, None)
        if not (isinstance(found, type) and issubclass(found, Exception)):
            msg = (
                f"'error' must name a builtin exception type (such as 'ConnectionError' or"
                f" 'TimeoutError'), got {value!r}"
            )
            raise ValueError(msg)
        return found
    return cast("ChaosError | None", value)  # _check_error checks it


def _check_error(_instance: object, _attribute: object, value: object) -> None:
    if value is None or isinstance(value, BaseException) or callable(value):
        return
    msg = (
        "'error' must be an exception, an exception type, a factory returning one, or None,"
        f" got {value!r} of type {type(value).__name__}"
    )
    raise TypeError(msg)


@final
@attrs.frozen(kw_only=True)
class Chaos:
    """
    Inject faults into a share of a dependency's calls.

    Args:
        rate: the share of calls (0 to 1) injected into; each call draws once from the
            supervisor's ``random.Random``.
        error: raised instead of calling the dependency: an exception instance, an exception
            type (instantiated with no argument) or a factory ``() -> exception`` (a fresh one
            per injection, so tracebacks do not pile up on one instance). From a file: the
            name of a builtin exception type (``"ConnectionError"``).
        latency: seconds (or a ``timedelta``) to wait before the call (or the injected error
            or result): the dependency seems slow. ``Timeout.attempt`` counts it.
        result: answer with this instead of calling the dependency (a stream streams its
            items). Not with *error*.

    At least one of *error*, *latency* and *result* is given.

    Raises:
        TypeError, ValueError: *rate* is not within 0 to 1; *latency* is not ``> 0``; *error*
            is not an exception, a type, a factory or a builtin type's name; none of the
            three is given, or both *error* and *result*.
    """

    rate: float = attrs.field(validator=number(ge=0, le=1))
    error: ChaosError | None = attrs.field(default=None, converter=_error, validator=_check_error)  # type: ignore[assignment]  # attrs: the converter takes object
    latency: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    result: object = NO_RESULT

    def __attrs_post_init__(self) -> None:
        if self.error is None and self.latency is None and self.result is NO_RESULT:
            msg = "Chaos needs something to inject: error=, latency= or result="
            raise ValueError(msg)
        if self.error is not None and self.result is not NO_RESULT:
            msg = "Chaos(error=..., result=...): an injected call raises or answers, not both"
            raise ValueError(msg)

    def draw(self, rng: random.Random) -> bool:
        """Whether this call is injected into: one draw from *rng*."""
        return rng.random() < self.rate

    def injects(self) -> tuple[str, ...]:
        """What an injected call gets, in order: ``latency``, then ``error`` or ``result``."""
        kinds = ("latency",) if self.latency is not None else ()
        if self.error is not None:
            return (*kinds, "error")
        if self.result is not NO_RESULT:
            return (*kinds, "result")
        return kinds

    def make_error(self) -> BaseException:
        """The exception to raise (a fresh one from a type or a factory)."""
        error = self.error
        assert error is not None
        if isinstance(error, BaseException):
            return error
        made = error()
        if not isinstance(made, BaseException):
            msg = f"Chaos(error={error!r}) returned {made!r}, not an exception"
            raise TypeError(msg)
        return made
