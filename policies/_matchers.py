"""
Error filters: which exceptions ``retry_on``, ``record``, ``ignore`` and ``fallback_on`` mean.

Users say it in whichever form is natural: an exception type (``ConnectionError``), a kind
(``ErrorKind.RATE_LIMITED``, or its value ``"rate_limited"`` as a configuration file spells
it), a predicate ``(exc) -> bool``, or a tuple, list or set mixing those. :meth:`ErrorFilter.of`
normalises all of them once, at construction (stamina's ``from_params`` turns ``on`` into one
predicate the same way), into one frozen :class:`ErrorFilter`, so the runtime makes one call
per failure and a reader sees one readable repr.

Theory of operation: a filter matches when *any* of its parts does, cheapest first.

1. ``types``: one ``isinstance`` against a tuple, a few hundred nanoseconds;
2. ``kinds``: :func:`~policies.classify.classify` (a dozen attribute reads) is called only when
   kinds were given and no type matched, and not at all when the runtime passes the kind it
   already knows (``kind=``: classified once per failure, with the user's ``Classifier``);
3. ``predicates``: user code, in the order given, last because it may be slow.

An ``async def`` predicate is refused at construction: calling it returns a coroutine, which is
always truthy, so ``retry_on=async_check`` would silently retry everything. A plain function
that returns an awaitable anyway (a ``lambda`` around an async function) cannot be recognised
until it is called; it raises ``TypeError`` then, and its coroutine is closed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias, final

import attrs

from .classify import ErrorKind, _is_async_callable, classify

__all__ = (
    "DEFAULT_FALLBACK_ON",
    "DEFAULT_RECORD",
    "DEFAULT_RETRY_ON",
    "ErrorFilter",
    "ErrorPredicate",
    "ErrorSpec",
)

#: A predicate as a filter takes it: truthy means "this exception matches".
ErrorPredicate: TypeAlias = Callable[[Exception], object]
#: One part of a filter.
_Item: TypeAlias = type[BaseException] | ErrorKind | str | ErrorPredicate

_FORMS = (
    "an exception type, an ErrorKind, a predicate (exc) -> bool, or a tuple, list or set of those"
)
_KIND_VALUES = ", ".join(repr(kind.value) for kind in ErrorKind)


def _kinds_repr(kinds: frozenset[ErrorKind]) -> str:
    """``frozenset({ErrorKind.TRANSIENT, ...})`` in the enum's order, the same in every run."""
    # A frozenset of str enums iterates in hash order, which PYTHONHASHSEED changes per run.
    ordered = ", ".join(f"ErrorKind.{kind.name}" for kind in ErrorKind if kind in kinds)
    return f"frozenset({{{ordered}}})" if ordered else "frozenset()"


def _check_types(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        msg = f"'types' must be a tuple of exception types, got {value!r}"
        raise TypeError(msg)


def _check_kinds(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, frozenset) or not all(isinstance(k, ErrorKind) for k in value):
        msg = f"'kinds' must be a frozenset of ErrorKind, got {value!r}"
        raise TypeError(msg)


def _check_predicates(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, tuple):
        msg = f"'predicates' must be a tuple of predicates (exc) -> bool, got {value!r}"
        raise TypeError(msg)
    for predicate in value:
        _check_predicate("predicates", predicate)


def _check_predicate(name: str, predicate: object) -> None:
    if not callable(predicate):
        msg = (
            f"{name!r} must be {_FORMS}; it holds {predicate!r} of type {type(predicate).__name__}"
        )
        raise TypeError(msg)
    if _is_async_callable(predicate):
        msg = (
            f"{name!r} must hold plain predicates (exc) -> bool, got the async callable"
            f" {predicate!r}: its coroutine would always count as a match"
        )
        raise TypeError(msg)


@final
@attrs.frozen(kw_only=True)
class ErrorFilter:
    """
    Which exceptions a policy option means; build it with :meth:`ErrorFilter.of`.

    ``filter(exc)`` is ``True`` when *exc* is an instance of one of ``types``, or its kind is
    in ``kinds``, or a predicate returns a truthy value; the parts are tried in that order and
    the first match wins (see the module docstring for why). ``ErrorFilter()`` matches nothing.

    Attributes:
        types: exception classes, checked with one ``isinstance``.
        kinds: :class:`~policies.classify.ErrorKind` values; the exception is classified only
            when these are given and no type matched.
        predicates: plain functions ``(exc) -> bool``, called in order.
    """

    types: tuple[type[BaseException], ...] = attrs.field(default=(), validator=_check_types)
    kinds: frozenset[ErrorKind] = attrs.field(
        default=frozenset(), validator=_check_kinds, repr=_kinds_repr
    )
    predicates: tuple[ErrorPredicate, ...] = attrs.field(default=(), validator=_check_predicates)

    @classmethod
    def of(cls, spec: ErrorSpec, *, name: str = "errors") -> ErrorFilter:
        """
        Normalise what a user passed as ``retry_on``, ``record``, ``ignore`` or ``fallback_on``.

        Args:
            spec: an exception type; an :class:`~policies.classify.ErrorKind` or its value
                (``"transient"``); a plain predicate ``(exc) -> bool``; a tuple, list, set or
                frozenset mixing those (not nested); or an :class:`ErrorFilter`, returned as
                it is (inside a collection its parts join the others', so
                ``(DEFAULT_RETRY_ON, MyError)`` means "the default, and ``MyError``"). An
                empty collection matches nothing.
            name: the argument's name, for error messages (``"retry_on"``).

        Returns:
            The filter; equal filters for equal meanings (``ConnectionError`` and
            ``(ConnectionError,)`` give the same one).

        Raises:
            TypeError: *spec* or one of its items is none of these forms (an ``int``, a class
                that is no exception, a nested tuple, ``None``), or a predicate is an
                ``async`` callable (found through ``functools.partial``, ``functools.wraps``
                and an async ``__call__``). The message names the argument and the item.
            ValueError: a string that names no ``ErrorKind``.
        """
        if isinstance(spec, ErrorFilter):
            return spec  # attrs.evolve() passes a converted field through the converter again
        items: Iterable[object] = (
            spec if isinstance(spec, tuple | list | set | frozenset) else (spec,)
        )
        types: list[type[BaseException]] = []
        kinds: set[ErrorKind] = set()
        predicates: list[ErrorPredicate] = []
        for item in items:
            if isinstance(item, type):
                if not issubclass(item, BaseException):
                    msg = f"{name!r} must be {_FORMS}; it holds {item!r}, which is no exception"
                    raise TypeError(msg)
                if item not in types:
                    types.append(item)
            elif isinstance(item, ErrorKind):
                kinds.add(item)
            elif isinstance(item, str):
                try:
                    kinds.add(ErrorKind(item))
                except ValueError:
                    msg = (
                        f"{name!r} holds the string {item!r}, which names no ErrorKind"
                        f" (one of {_KIND_VALUES}); pass an exception type itself, not its name"
                    )
                    raise ValueError(msg) from None
            elif isinstance(item, ErrorFilter):
                types.extend(t for t in item.types if t not in types)
                kinds.update(item.kinds)
                predicates.extend(item.predicates)
            elif isinstance(item, tuple | list | set | frozenset):
                msg = f"{name!r} must be {_FORMS}, not nested; it holds the {type(item).__name__} {item!r}"
                raise TypeError(msg)
            elif not callable(item):
                msg = f"{name!r} must be {_FORMS}; it holds {item!r} of type {type(item).__name__}"
                raise TypeError(msg)
            else:
                _check_predicate(name, item)
                predicates.append(item)
        return cls(types=tuple(types), kinds=frozenset(kinds), predicates=tuple(predicates))

    def __call__(self, exc: Exception, /, kind: ErrorKind | None = None) -> bool:
        """
        Whether *exc* matches.

        Args:
            exc: the exception a call raised.
            kind: its kind, when the caller has classified it already (the runtime does,
                once per failure, with the user's ``Classifier``); ``None`` classifies it
                with :func:`~policies.classify.classify` if, and only if, kinds are needed.

        Raises:
            TypeError: a predicate returned an awaitable (a ``lambda`` around an ``async``
                function); the awaitable is closed, never awaited.
            Exception: whatever a predicate raises, unchanged.
        """
        if isinstance(exc, self.types):
            return True
        # Empty kinds: no classification at all (`and` stops before classify runs).
        if self.kinds and (kind if kind is not None else classify(exc)) in self.kinds:
            return True
        for predicate in self.predicates:
            verdict = predicate(exc)
            if inspect.isawaitable(verdict):
                if inspect.iscoroutine(verdict):
                    verdict.close()  # never awaited by design; closed so Python does not warn
                msg = (
                    f"the predicate {predicate!r} returned an awaitable: error filter"
                    " predicates must be plain functions returning a bool"
                )
                raise TypeError(msg)
            if verdict:
                return True
        return False


#: Everything ``retry_on``, ``record``, ``ignore`` and ``fallback_on`` accept.
ErrorSpec: TypeAlias = (
    _Item | tuple[_Item, ...] | list[_Item] | frozenset[_Item] | set[_Item] | ErrorFilter
)

_T = ErrorKind.TRANSIENT
_R = ErrorKind.RATE_LIMITED
_U = ErrorKind.UNKNOWN

# The defaults fail safe (DESIGN.md Part 2, "Defaults"): an error ringfence cannot classify
# (a DB driver's OperationalError, a RuntimeError, an OSError(EIO), an answer that cannot be
# parsed) counts against the dependency, as in every peer library. Leaving ``unknown`` out
# made the breaker and the retry blind to every client nobody wrote a rule for. Only what
# classify() positively knows is the caller's (invalid_input), the operator's (auth), the
# limiter's (rate_limited) or final (permanent) is exempt.

#: ``Retry.retry_on`` by default: transient failures (timeouts, dropped connections, 5xx,
#: overloads, ringfence's ``AttemptTimeout``), rate limiting (429) and ``unknown`` errors (the
#: retry budget bounds what retrying them costs in an outage). A 400 or a 401 fails the same
#: way every time, so retrying it only multiplies the load; a ``permanent`` error too.
DEFAULT_RETRY_ON: Final = ErrorFilter(kinds=frozenset({_T, _R, _U}))

#: ``Breaker.record`` by default: transient and ``unknown`` failures. A 400 or 401 is the
#: caller's problem, a 429 is the rate limiter's and a ``permanent`` error says nothing about
#: the dependency's health; none of them may open the breaker for every other caller.
DEFAULT_RECORD: Final = ErrorFilter(kinds=frozenset({_T, _U}))

#: ``fallback_on`` by default: every kind but ``invalid_input`` and ``auth``. A caller's bad
#: request or an operator's wrong key must surface, not be masked by a cached answer.
DEFAULT_FALLBACK_ON: Final = ErrorFilter(
    kinds=frozenset(ErrorKind) - {ErrorKind.INVALID_INPUT, ErrorKind.AUTH}
)
