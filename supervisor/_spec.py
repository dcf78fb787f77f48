"""
What registering a dependency means, decided once: how to run its function, and the checks
every policy argument passes, the same for ``register``, ``protect``, ``reconfigure`` and the
configuration file (:data:`POLICY_TYPES` is the one table of the policy classes), and the
warning a registration gets when its SDK client retries by itself.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import math
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, TypeVar, cast

from policies import (
    DEFAULT_FALLBACK_ON,
    Breaker,
    Bulkhead,
    Chaos,
    ErrorFilter,
    ErrorKind,
    Hedge,
    RateLimit,
    Retry,
    Timeout,
    classify,
    retry_after,
)
from policies.budget import RetryBudget
from policies.classify import _kind_or_unknown as _kind_or_unknown
from policies.concurrency import AdaptiveLimit, GradientLimit

from ._errors import (
    BreakerOpen,
    BulkheadFull,
    DependencyCrashed,
    RateLimited,
    SupervisorClosed,
    UnknownDependency,
    all_of,
)

__all__ = (
    "POLICY_TYPES",
    "SYNC_THREADS",
    "MAX_PAUSE",
    "NO_BREAKER",
    "RateLimits",
    "Settings",
    "Unset",
    "UNSET",
    "awaiting",
    "callable_kind",
    "bulkhead_size",
    "check_fallback",
    "check_policy",
    "check_type",
    "given_or_configured",
    "rate_limits",
    "warn_sdk_retries",
)

#: Calls a sync callable registered without a bulkhead runs at once, each in a worker thread
#: of its own limiter (anyio's default size); further calls wait in its queue.
SYNC_THREADS: Final = 40


def bulkhead_size(bulkhead: Bulkhead | None, is_async: bool) -> tuple[int, int]:
    """
    A dependency's ``(max_concurrent, max_queued)``: its bulkhead's (an adaptive limit's
    initial one); for a sync callable without one, at most :data:`SYNC_THREADS` calls in
    threads and the rest in the queue (by priority, FIFO within a level; shown in
    ``status().queued``, not timed as an attempt); else no bound.
    """
    if bulkhead is not None:
        limit = bulkhead.max_concurrent  # an adaptive one starts here (the actor moves it)
        return limit if isinstance(limit, int) else limit.initial, bulkhead.max_queued
    if not is_async:
        return SYNC_THREADS, sys.maxsize
    return sys.maxsize, 0


#: The policy arguments that take one policy object (or ``None``), with the class and the
#: name an error gives it: ``register``, ``reconfigure`` and the configuration file read it.
POLICY_TYPES: Final[Mapping[str, tuple[type, str]]] = {
    "retry": (Retry, "policies.Retry"),
    "breaker": (Breaker, "policies.Breaker"),
    "timeout": (Timeout, "policies.Timeout"),
    "bulkhead": (Bulkhead, "policies.Bulkhead"),
    "rate_limit": (RateLimit, "policies.RateLimit"),
    "hedge": (Hedge, "policies.Hedge"),
    "chaos": (Chaos, "policies.Chaos"),
}


#: A dependency registered without a breaker never trips on its own; manual control still works.
NO_BREAKER: Final = Breaker(failure_threshold=sys.maxsize)
_DEFAULT_FALLBACK_ON: Final = ErrorFilter.of(DEFAULT_FALLBACK_ON, name="fallback_on")
#: A pause is capped like a Retry-After hint (policies.retry_after's default cap).
MAX_PAUSE: Final = 300.0


# ringfence's refusals to call a dependency. Raised out of another dependency's function (a
# nested call: `outer` awaiting `inner` through the supervisor), they were counted where they
# happened, in `inner`; for `outer` they count as neither success nor failure, like an
# ignored exception, so one open breaker does not open the breakers of everything that uses
# it (Settings.judge). Timeouts are not refusals: `outer` did not answer in time, and that
# counts.
_REJECTIONS: Final = (
    BreakerOpen,
    BulkheadFull,
    RateLimited,
    DependencyCrashed,
    SupervisorClosed,
    UnknownDependency,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """
    A dependency's policies as configured: registration's, then each reconfigure's changes
    (:meth:`changed`), with what follows from them alone. Pure: the actor keeps the state
    their machines hold (a budget, an adaptive limit, a breaker, rate-limit buckets) and
    copies out, flat, what its hot path reads (``Actor._apply``).
    """

    retry: Retry | None = None
    timeout: Timeout | None = None
    bulkhead: Bulkhead | None = None
    breaker: Breaker = NO_BREAKER  # (None given: NO_BREAKER)
    fallback: Callable[..., object] | None = None
    fallback_on: ErrorFilter = _DEFAULT_FALLBACK_ON  # (None given: the default)
    classifier: Callable[[BaseException], ErrorKind] = classify  # (None given: classify)
    rate_limit: tuple[RateLimit, ...] = ()
    hedge: Hedge | None = None
    chaos: Chaos | None = None

    def changed(self, changes: Mapping[str, Any]) -> Settings:
        """
        These settings with *changes*: checked policy arguments (``check_policy``) by name;
        ``None`` for a breaker, ``fallback_on`` or a classifier means the default.
        """
        changes = dict(changes)
        for key, default in _DEFAULTS.items():
            if key in changes and changes[key] is None:
                changes[key] = default
        return dataclasses.replace(self, **changes)

    def budget_machine(self, current: RetryBudget | None) -> RetryBudget | None:
        """The retry budget's machine: *current* while its settings stay (it keeps its
        counts), else a fresh one."""
        config = self.retry.budget if self.retry is not None else None
        if config is None:
            return None
        return current if current is not None and current.config == config else config.machine()

    def adaptive_machine(self, current: GradientLimit | None) -> GradientLimit | None:
        """An adaptive bulkhead limit's machine: *current* while its settings stay, else a
        fresh one, at its initial limit."""
        config = self.bulkhead.max_concurrent if self.bulkhead is not None else None
        if not isinstance(config, AdaptiveLimit):
            return None
        return current if current is not None and current.config == config else config.machine()

    @property
    def max_pause(self) -> float:
        """The longest pause a Retry-After hint may cause (``Retry.max_retry_after``)."""
        return self.retry.max_retry_after if self.retry is not None else MAX_PAUSE

    def judge(self, exc: Exception) -> tuple[ErrorKind, float | None, bool | None, bool]:
        """
        What an attempt's error *exc* means: its kind (the classifier's), the pause its
        Retry-After asks for (a rate-limited answer's, capped like a retry's wait; None
        without), whether the breaker counts it a failure (``Breaker.is_failure``: None,
        ignored), and whether it is a nested call's refusal (:data:`_REJECTIONS`), which is
        neither success nor failure, nor a sample of an adaptive limit.
        """
        if all_of(exc, _REJECTIONS):
            return ErrorKind.UNKNOWN, None, None, True
        kind = _kind_or_unknown(self.classifier, exc)
        hint = None
        if kind is ErrorKind.RATE_LIMITED:
            hint = retry_after(exc, now=time.time(), cap=self.max_pause)
        return kind, hint, self.breaker.is_failure(exc, kind), False

    @property
    def slow_after(self) -> float:
        """Seconds after which a call is slow (``Breaker.slow_call``); inf: never."""
        slow_call = self.breaker.slow_call
        return slow_call if slow_call is not None else math.inf


_DEFAULTS: Final = {
    "breaker": NO_BREAKER,
    "fallback_on": _DEFAULT_FALLBACK_ON,
    "classifier": classify,
}


# What calling a registered callable gives (see callable_kind).
KIND_SYNC: Final = 0  # a value: run it in a worker thread
KIND_ASYNC: Final = 1  # a coroutine: await it on the loop
KIND_WRAPS_ASYNC: Final = 2  # a plain def over an async function: call it on the loop, await
KIND_ASYNC_GEN: Final = 3  # an async generator function: only supervisor.stream() can run it

#: Links followed before giving up on a chain (a Mock grows a new __wrapped__ per access).
_MAX_UNWRAP: Final = 100


def callable_kind(fn: object, argument: str) -> int:
    """
    How to run *fn*, decided once at ``register``: follow partials (nested), bound methods,
    ``__wrapped__`` chains (``functools.wraps``) and an object's ``__call__`` down to the
    function that runs (issue #9 item 2; ``inspect.iscoroutinefunction`` alone misses a
    partial of a bound method, an async ``__call__`` and every ``wraps`` decorator).

    An ``async def`` reached without crossing ``__wrapped__`` is :data:`KIND_ASYNC`. One reached
    only through ``__wrapped__`` is :data:`KIND_WRAPS_ASYNC`: the outer layer is a plain
    ``def`` (the openai and anthropic SDKs' methods are), which almost always returns the
    coroutine, but may be a sync facade; its result is awaited when it is awaitable.

    An async generator function (also behind the same layers) is :data:`KIND_ASYNC_GEN`: its
    calls go through ``supervisor.stream()``, which holds a slot for the stream's life.

    Raises:
        TypeError: *fn* is, or wraps, a (sync) generator function: its calls would return an
            iterator that runs outside every policy.
    """
    current = fn
    crossed_wrapped = False
    for _ in range(_MAX_UNWRAP):
        if inspect.isasyncgenfunction(current):
            return KIND_ASYNC_GEN
        if inspect.isgeneratorfunction(current):
            name = getattr(fn, "__qualname__", type(fn).__qualname__)
            msg = (
                f"{argument!r} ({name}) is or wraps a generator function: its items would be"
                " produced outside every policy; register an async generator function (and"
                " call it with supervisor.stream()) or a function returning the whole result"
            )
            raise TypeError(msg)
        if inspect.iscoroutinefunction(current):
            return KIND_WRAPS_ASYNC if crossed_wrapped else KIND_ASYNC
        if isinstance(current, functools.partial):
            current = current.func
        elif inspect.ismethod(current):
            current = current.__func__
        elif inspect.isclass(current):
            return KIND_SYNC  # calling a class builds an instance
        else:
            try:
                wrapped = getattr(current, "__wrapped__", None)
            except Exception:  # a proxy whose __getattr__ raises: nothing to follow
                wrapped = None
            if wrapped is not None and callable(wrapped):
                current = wrapped
                crossed_wrapped = True
            elif inspect.isfunction(current) or inspect.isbuiltin(current):
                return KIND_SYNC
            else:  # an object: what runs is its __call__
                call = getattr(type(current), "__call__", None)  # noqa: B004
                if call is None or call is current or inspect.ismethoddescriptor(call):
                    return KIND_SYNC  # a C-level __call__ (builtins, slot wrappers)
                current = call
    return KIND_SYNC  # pragma: no cover  # a chain longer than _MAX_UNWRAP: run it in a thread


def awaiting(fn: Callable[..., object]) -> Callable[..., Coroutine[Any, Any, object]]:
    """*fn* as an ``async def`` that awaits its result when the result is awaitable."""

    async def call(*args: object, **kwargs: object) -> object:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    return call


class Unset(enum.Enum):
    """``register()``'s "argument not given": the configuration decides (None would not)."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET
_T = TypeVar("_T")


def given_or_configured(
    value: _T | Unset, configured: Mapping[str, object], key: str, default: _T
) -> _T:
    """An argument given to ``register()`` wins; else the configuration's, else *default*."""
    if not isinstance(value, Unset):
        return value
    # load_config built these from the policy classes themselves; register() still checks.
    return cast("_T", configured.get(key, default))


RateLimits = RateLimit | Iterable[RateLimit] | None


def rate_limits(value: object) -> tuple[RateLimit, ...]:
    """``rate_limit=``: one :class:`RateLimit`, a sequence of them (RPM and TPM), or None."""
    if value is None:
        return ()
    if isinstance(value, RateLimit):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        msg = (
            "'rate_limit' must be a policies.RateLimit, a sequence of them, or None,"
            f" got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)
    limits = tuple(value)
    for i, limit in enumerate(limits):
        if not isinstance(limit, RateLimit):
            msg = (
                f"'rate_limit[{i}]' must be a policies.RateLimit, got {limit!r} of type"
                f" {type(limit).__name__}"
            )
            raise TypeError(msg)
    return limits


def check_policy(key: str, value: object) -> Any:
    """
    *value* for the policy argument *key* (a :data:`POLICY_TYPES` key), checked, the same for
    ``register`` and ``reconfigure``: ``None`` or an instance of its class; ``rate_limit``
    also takes a sequence and comes back as a tuple.
    """
    if key == "rate_limit":
        return rate_limits(value)
    kind, label = POLICY_TYPES[key]
    check_type(key, value, kind, label)
    return value


def check_type(name: str, value: object, kind: type, label: str) -> None:
    if value is not None and not isinstance(value, kind):
        msg = f"{name!r} must be a {label} or None, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)


_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC: Final = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def check_fallback(fn: Callable[..., Any], fallback: object) -> None:
    """
    The one check of a fallback, for ``register()`` and ``reconfigure()`` alike: *fallback*
    for the dependency whose registered function is *fn* (``None``: no fallback, accepted).

    It must be callable, and not (wrap) a sync generator function: its items would be
    produced outside every policy, and the generator returned un-run. An async generator
    function is allowed, as a stream's fallback: register cannot tell a stream from a call
    when *fn* returns an async iterable (openai's ``create(stream=True)``).

    It is called as ``fallback(error, *args, **kwargs)`` with the call's own arguments.
    Where both signatures can be read, check that it takes the error and both the fewest and
    the most arguments *fn* takes (positional ones by position, keyword-only ones by name):
    a wrong fallback fails here, not at the moment it is needed, as a TypeError in place of
    every answer.

    Raises:
        TypeError: naming the fallback (and *fn*) and the rule broken.
    """
    if fallback is None:
        return
    if not callable(fallback):
        msg = f"'fallback' must be callable or None, got {fallback!r}"
        raise TypeError(msg)
    callable_kind(fallback, "fallback")
    try:
        fn_signature = inspect.signature(fn)
        fallback_signature = inspect.signature(fallback)
    except (TypeError, ValueError):  # a builtin or a C callable: nothing to read
        return
    parameters = fn_signature.parameters.values()
    if any(p.kind in _VARIADIC for p in parameters):
        return  # fn(*args, **kwargs) says nothing of the calls made (often a wrapper's)
    fewest: tuple[list[None], dict[str, None]] = ([], {})
    most: tuple[list[None], dict[str, None]] = ([], {})
    for parameter in parameters:
        required = parameter.default is inspect.Parameter.empty
        if parameter.kind in _POSITIONAL:
            most[0].append(None)
            if required:
                fewest[0].append(None)
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            most[1][parameter.name] = None
            if required:
                fewest[1][parameter.name] = None
    for args, kwargs in (fewest, most):
        try:
            fallback_signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            msg = (
                f"'fallback' {_name(fallback)}{fallback_signature} cannot be called as"
                f" fallback(error, *args, **kwargs) for 'fn' {_name(fn)}{fn_signature}: {exc}"
            )
            raise TypeError(msg) from None


def _name(fn: object) -> str:
    return str(getattr(fn, "__qualname__", type(fn).__qualname__))


#: SDK clients already warned about (weakly held): the warning is said once per client.
_WARNED: weakref.WeakSet[object] = weakref.WeakSet()


def warn_sdk_retries(name: str, fn: Callable[..., Any]) -> None:
    """
    Warn once per client when *fn* is an openai or anthropic client's method and the client
    retries by itself (``max_retries > 0``): under ringfence's retry each attempt would send
    up to ``1 + max_retries`` requests (3 x 3 = 9 per call by default).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    resource = getattr(fn, "__self__", None)
    client = getattr(resource, "_client", None)  # the SDKs' resources keep their client so
    package = type(client).__module__.partition(".")[0]
    retries = getattr(client, "max_retries", 0)
    if package not in ("openai", "anthropic") or not isinstance(retries, int) or retries <= 0:
        return
    try:
        if client in _WARNED:
            return
        _WARNED.add(client)
    except TypeError:  # not weakly referenceable: warn each time rather than never
        pass
    warnings.warn(
        f"{name!r} is a method of an {package} client that retries by itself"
        f" (max_retries={retries}): under ringfence's retry each attempt may send"
        f" {1 + retries} requests. Build the client with max_retries=0, or register"
        " client.with_options(max_retries=0)'s method",
        UserWarning,
        stacklevel=4,
    )
