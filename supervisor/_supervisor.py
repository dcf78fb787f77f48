"""
The supervisor: a registry of dependency actors, their task group, and the public API.

It starts one actor task per dependency when ``async with supervisor:`` is entered (or when a
dependency is registered later), restarts crashed actors within a limit, and on leaving fails
queued calls and cuts off running ones with ``SupervisorClosed``.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    ParamSpec,
    TypeVar,
    final,
    overload,
)

import anyio
from anyio.abc import TaskGroup

from policies import (
    DEFAULT_FALLBACK_ON,
    Breaker,
    Bulkhead,
    Chaos,
    ErrorFilter,
    ErrorKind,
    ErrorSpec,
    Hedge,
    RateLimit,
    Retry,
    State,
    Timeout,
    Transition,
)

from . import _priority, _testmode
from ._actor import Actor
from ._backends import paths_for
from ._config import Config, load_config
from ._errors import UnknownDependency
from ._events import Event, EventHub, EventStream
from ._handle import Dependency, Protect
from ._runtime import (
    LazyEvent,
    ReplicaDependency,
    Runtime,
    SharedState,
    backend_clock,
    current_backend,
)
from ._spec import (
    UNSET,
    RateLimits,
    Unset,
    check_fallback,
    check_policy,
    given_or_configured,
    warn_sdk_retries,
)
from ._status import DependencyStatus, Health, HealthStatus

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ("Supervisor", "Dependency")

P = ParamSpec("P")
R = TypeVar("R")

_NEW, _RUNNING, _CLOSED = 0, 1, 2


@final
class Supervisor:
    """
    Protects the dependencies registered with it; see DESIGN.md for the guarantees.

    Args:
        rng: the ``random.Random`` jitter draws from (seed it for reproducible backoff).
        max_restarts: crash restarts allowed per dependency within *restart_window*.
        restart_window: seconds over which restarts are counted.
        shared: state shared with the service's other replicas (rate limits, pauses, open
            verdicts): ``supervisor.integrations.redis.RedisShared(...)``; ``None`` (the
            default) keeps everything in this process.

    Use it as an async context manager. Once left, it can be entered again (not while it
    runs, and not with ``shared``): every dependency starts afresh — a new actor, its
    policies as registered (a ``reconfigure`` is not kept), zero counters — and the handles
    already given out call the new actors. A module-level supervisor thus serves one test
    after another (Starlette's ``TestClient`` runs the lifespan per test).
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        max_restarts: int = 3,
        restart_window: float = 60.0,
        shared: SharedState | None = None,
    ) -> None:
        if rng is not None and not isinstance(rng, random.Random):
            msg = f"'rng' must be a random.Random or None, got {type(rng).__name__}"
            raise TypeError(msg)
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            msg = f"'max_restarts' must be an int >= 0, got {max_restarts!r}"
            raise TypeError(msg)
        if max_restarts < 0:
            msg = f"'max_restarts' must be an int >= 0, got {max_restarts!r}"
            raise ValueError(msg)
        if isinstance(restart_window, bool) or not isinstance(restart_window, int | float):
            msg = f"'restart_window' must be a number > 0, got {restart_window!r}"
            raise TypeError(msg)
        if not restart_window > 0:
            msg = f"'restart_window' must be a number > 0, got {restart_window!r}"
            raise ValueError(msg)
        self._rng = rng if rng is not None else random.Random()
        self._max_restarts = max_restarts
        self._restart_window = float(restart_window)
        self._actors: dict[str, Actor] = {}
        # The callables as registered (an actor may keep a wrapper): reconfigure() checks a
        # new fallback against their parameters, as register() did.
        self._registered: dict[str, Callable[..., Any]] = {}
        # What each was registered with, and its handle: entering again after leaving makes
        # fresh actors from these (testing.py's overrides applied) and attaches the handles.
        self._specs: dict[str, dict[str, Any]] = {}
        self._handles: dict[str, Dependency[Any, Any]] = {}
        self._phase = _NEW
        self._task_group: TaskGroup | None = None
        self._closing = LazyEvent()
        self._clock: Callable[[], float] | None = None
        self._runtime: Runtime | None = None
        self._backend = "asyncio"
        self._hub = EventHub()
        self._config: Config | None = None
        if shared is not None and not all(
            callable(getattr(shared, attr, None))
            for attr in ("run", "limiter", "degraded", "cluster_status", "isolate", "reset")
        ):
            msg = (
                "'shared' must be shared state such as supervisor.integrations.redis"
                f".RedisShared(...), or None; got {shared!r} of type {type(shared).__name__}"
            )
            raise TypeError(msg)
        self._shared = shared

    # ==========================================================================================
    # Registration

    @overload
    def register(
        self,
        name: str,
        fn: Callable[P, Awaitable[R]],
        *,
        retry: Retry | None = ...,
        breaker: Breaker | None = ...,
        timeout: Timeout | None = ...,
        bulkhead: Bulkhead | None = ...,
        fallback: Callable[Concatenate[Exception, P], R | Awaitable[R]] | None = ...,
        critical: bool = ...,
        fallback_on: ErrorSpec = ...,
        classifier: Callable[[BaseException], ErrorKind] | None = ...,
        rate_limit: RateLimits = ...,
        hedge: Hedge | None = ...,
        chaos: Chaos | None = ...,
    ) -> Dependency[P, R]: ...

    @overload
    def register(
        self,
        name: str,
        fn: Callable[P, R],
        *,
        retry: Retry | None = ...,
        breaker: Breaker | None = ...,
        timeout: Timeout | None = ...,
        bulkhead: Bulkhead | None = ...,
        fallback: Callable[Concatenate[Exception, P], R | Awaitable[R]] | None = ...,
        critical: bool = ...,
        fallback_on: ErrorSpec = ...,
        classifier: Callable[[BaseException], ErrorKind] | None = ...,
        rate_limit: RateLimits = ...,
        hedge: Hedge | None = ...,
        chaos: Chaos | None = ...,
    ) -> Dependency[P, R]: ...

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        retry: Retry | Unset | None = UNSET,
        breaker: Breaker | Unset | None = UNSET,
        timeout: Timeout | Unset | None = UNSET,
        bulkhead: Bulkhead | Unset | None = UNSET,
        fallback: Callable[..., Any] | None = None,
        critical: bool | Unset = UNSET,
        fallback_on: ErrorSpec = DEFAULT_FALLBACK_ON,
        classifier: Callable[[BaseException], ErrorKind] | None = None,
        rate_limit: RateLimits | Unset = UNSET,
        hedge: Hedge | Unset | None = UNSET,
        chaos: Chaos | Unset | None = UNSET,
    ) -> Dependency[Any, Any]:
        """
        Protect *fn* under *name*. Every policy is optional; with none, calls pass straight
        through (and are still counted in ``status``). May be called before or after entering
        ``async with``.

        Args:
            name: unique, non-empty.
            fn: an async callable is awaited on the loop (``async def``, also behind
                ``functools.wraps``, partials, bound methods, or an async ``__call__``); a
                sync callable runs in a worker thread, and if it returns an awaitable (a
                lambda around an async client), that is awaited on the loop and the callable
                is called on the loop from then on.
            retry, breaker, timeout, bulkhead: policies from :mod:`policies`. A sync *fn*
                gets worker threads of its own, as many as ``bulkhead.max_concurrent``;
                without a bulkhead, 40 (``SYNC_THREADS``), and further calls wait in its
                queue (``status().queued``; ``Timeout.total`` covers the wait,
                ``Timeout.attempt`` starts when a thread is free).
            fallback: ``fallback(error, *args, **kwargs)``, sync or async; its result is
                returned instead of raising (see the README for which errors reach it).
            critical: ``health()`` is unhealthy while this dependency is down.
            fallback_on: which errors the fallback answers: exception types,
                :class:`policies.ErrorKind` values or predicates (default: every error but
                the ``invalid_input`` and ``auth`` kinds — a caller's or an operator's
                mistake surfaces instead of being masked by a cached answer).
            classifier: ``(exc) -> ErrorKind`` (a :class:`policies.Classifier`) deciding the
                kind of the dependency's failures; default :func:`policies.classify`.
            rate_limit: a :class:`policies.RateLimit` or a sequence of them (requests per
                minute *and* tokens per minute): every attempt takes a turn in each, all or
                none, after the breaker and before the bulkhead; waiting for a turn holds no
                slot and ends at the total deadline; ``RateLimited`` when the wait would be
                longer than a limit's ``max_wait`` or the deadline.
            hedge: a :class:`policies.Hedge`: when an attempt has not answered after its
                delay, another starts beside it (admitted at once or not at all, spending
                the retry budget); the first success wins, the others are cancelled and
                count nothing. Streams are hedged until their first item.
            chaos: a :class:`policies.Chaos`: inject errors, latency or a substitute result
                into a share of the calls (off unless configured; without it the function
                is not wrapped).

        Policies not given here come from the configuration of a supervisor built with
        :meth:`from_config` (given arguments win, ``None`` included), else none.

        Returns:
            A typed :class:`Dependency` handle.

        Raises:
            TypeError: an argument has the wrong type; *fallback* cannot take
                ``(error, *args, **kwargs)`` for *fn*'s parameters (checked where both
                signatures can be read); or *fn* or *fallback* is (or wraps) a (sync)
                generator function. An async generator function registers as a stream:
                call it with :meth:`stream`.
            ValueError: *name* is empty or already registered.

        Registered after the supervisor was left, a dependency starts when it is entered
        again.
        """
        return self._add(
            name,
            fn,
            binds=False,
            retry=retry,
            breaker=breaker,
            timeout=timeout,
            bulkhead=bulkhead,
            fallback=fallback,
            critical=critical,
            fallback_on=fallback_on,
            classifier=classifier,
            rate_limit=rate_limit,
            hedge=hedge,
            chaos=chaos,
        )

    def _add(
        self, name: str, fn: Callable[..., Any], *, binds: bool, **policies: Any
    ) -> Dependency[Any, Any]:
        """:meth:`register`, and :meth:`protect`'s (whose handle on a method binds ``self``)."""
        if not isinstance(name, str):
            msg = f"'name' must be a str, got {name!r} of type {type(name).__name__}"
            raise TypeError(msg)
        if not name:
            msg = "'name' must be a non-empty str"
            raise ValueError(msg)
        if name in self._actors:
            msg = f"a dependency named {name!r} is already registered"
            raise ValueError(msg)
        if not callable(fn):
            msg = f"'fn' must be callable, got {fn!r} of type {type(fn).__name__}"
            raise TypeError(msg)
        configured = {} if self._config is None else self._config.policies_for(name)
        retry = given_or_configured(policies["retry"], configured, "retry", None)
        breaker = given_or_configured(policies["breaker"], configured, "breaker", None)
        timeout = given_or_configured(policies["timeout"], configured, "timeout", None)
        bulkhead = given_or_configured(policies["bulkhead"], configured, "bulkhead", None)
        hedge = given_or_configured(policies["hedge"], configured, "hedge", None)
        critical = given_or_configured(policies["critical"], configured, "critical", False)
        injected: Chaos | None = check_policy(
            "chaos", given_or_configured(policies["chaos"], configured, "chaos", None)
        )
        limits = check_policy(
            "rate_limit",
            given_or_configured(policies["rate_limit"], configured, "rate_limit", None),
        )
        self._check_reserve(name, limits)
        fallback = policies["fallback"]
        fallback_filter = ErrorFilter.of(policies["fallback_on"], name="fallback_on")
        classifier = policies["classifier"]
        if classifier is not None and not callable(classifier):
            msg = f"'classifier' must be callable or None, got {classifier!r}"
            raise TypeError(msg)
        for key, value in (
            ("retry", retry),
            ("breaker", breaker),
            ("timeout", timeout),
            ("bulkhead", bulkhead),
            ("hedge", hedge),
        ):
            check_policy(key, value)
        if not isinstance(critical, bool):
            msg = f"'critical' must be a bool, got {critical!r}"
            raise TypeError(msg)
        spec: dict[str, Any] = {
            "retry": retry,
            "breaker": breaker,
            "timeout": timeout,
            "bulkhead": bulkhead,
            "fallback": fallback,
            "critical": critical,
            "fallback_on": fallback_filter,
            "classifier": classifier,
            "rate_limit": limits,
            "hedge": hedge,
            "chaos": injected,
        }
        # Actor() rejects a generator fn first: a clearer error than the fallback's arity.
        mode = _testmode.current() if self._phase == _RUNNING else None
        actor = Actor(name, fn, **(spec if mode is None else mode.policies(spec)))
        check_fallback(fn, fallback)
        self._actors[name] = actor
        self._registered[name] = fn
        self._specs[name] = spec
        if self._phase == _RUNNING:
            self._start_actor(actor)
        if retry is not None:
            warn_sdk_retries(name, fn)
        handle: Dependency[Any, Any] = Dependency(self, actor, fn, binds=binds)
        self._handles[name] = handle
        return handle

    def protect(
        self,
        name: str | None = None,
        *,
        retry: Retry | Unset | None = UNSET,
        breaker: Breaker | Unset | None = UNSET,
        timeout: Timeout | Unset | None = UNSET,
        bulkhead: Bulkhead | Unset | None = UNSET,
        fallback: Callable[..., Any] | None = None,
        critical: bool | Unset = UNSET,
        fallback_on: ErrorSpec = DEFAULT_FALLBACK_ON,
        classifier: Callable[[BaseException], ErrorKind] | None = None,
        rate_limit: RateLimits | Unset = UNSET,
        hedge: Hedge | Unset | None = UNSET,
        chaos: Chaos | Unset | None = UNSET,
    ) -> Protect:
        """
        Register the decorated function, as :meth:`register` would, and return its typed
        handle: ``@supervisor.protect("llm", retry=Retry())`` over ``async def ask(...)``.

        Args:
            name: the dependency's name; default the function's ``__qualname__``.
            others: as for :meth:`register`.
        """
        policies: dict[str, Any] = {
            "retry": retry,
            "breaker": breaker,
            "timeout": timeout,
            "bulkhead": bulkhead,
            "fallback": fallback,
            "critical": critical,
            "fallback_on": fallback_on,
            "classifier": classifier,
            "rate_limit": rate_limit,
            "hedge": hedge,
            "chaos": chaos,
        }
        if name is not None and not isinstance(name, str):
            msg = (
                f"'name' must be a str or None, got {name!r}; use @protect() or @protect(\"name\")"
            )
            raise TypeError(msg)
        return Protect(self._add, name, policies)

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, object],
        *,
        env: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        max_restarts: int = 3,
        restart_window: float = 60.0,
        shared: SharedState | None = None,
    ) -> Supervisor:
        """
        A supervisor whose ``register(name, fn)`` takes *name*'s policies from a configuration.

        Arguments given to ``register()`` win over the configuration, ``None`` included
        (``retry=None`` switches a configured retry off). A name the configuration does not
        list gets its ``[defaults]``.

        Args:
            source: a TOML file's path, or a mapping shaped like the parsed file (see
                :func:`supervisor.load_config` and ``examples/ringfence.toml``).
            env: ``RINGFENCE_<NAME>__<POLICY>__<FIELD>`` overrides; ``os.environ`` when
                ``None``, ``{}`` to ignore the environment.
            rng, max_restarts, restart_window, shared: as for :class:`Supervisor`.

        Raises:
            ConfigError: every problem of the file and the environment at once; nothing
                is built.
        """
        config = load_config(source, env=env)
        supervisor = cls(
            rng=rng, max_restarts=max_restarts, restart_window=restart_window, shared=shared
        )
        supervisor._config = config
        return supervisor

    @property
    def config(self) -> Config | None:
        """The configuration given to :meth:`from_config`, or ``None``."""
        return self._config

    # ==========================================================================================
    # Lifecycle

    async def __aenter__(self) -> Supervisor:
        if self._phase == _RUNNING:
            msg = "this Supervisor is running already: leave its `async with` first"
            raise RuntimeError(msg)
        mode = _testmode.current()
        if self._phase == _CLOSED or mode is not None:
            if self._phase == _CLOSED and self._shared is not None:
                msg = "a Supervisor with shared state can be entered only once; create a new one"
                raise RuntimeError(msg)
            self._fresh_actors(mode)
        self._backend = current_backend()
        self._clock = backend_clock(self._backend)
        self._closing = LazyEvent(anyio.Event())
        self._runtime = Runtime(
            clock=self._clock,
            rng=self._rng if mode is None else random.Random(mode.seed),
            backend=self._backend,
            closing=self._closing,
            hub=self._hub,
            shared=self._shared,
            may_restart=self._may_restart,
        )
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._phase = _RUNNING
        for actor in self._actors.values():
            self._start_actor(actor)
        if self._shared is not None:
            try:
                await task_group.start(self._shared.run, self, name="ringfence shared state")
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._phase = _CLOSED
        self._closing.set()
        for actor in self._actors.values():
            actor.close()
        self._hub.close()  # event streams end after what they have buffered
        task_group = self._task_group
        assert task_group is not None
        if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
            return await task_group.__aexit__(exc_type, exc, tb)
        # The body raised: its exception is the caller's, not the actors'. Handed to the task
        # group, it would come out wrapped in an ExceptionGroup, and `except KeyError:` around
        # the block would not fire (issue #8, defect 4). End the actor tasks as the task group
        # would (cancel them, wait for them), keep the exception out of the group, and return
        # None so Python re-raises it as itself, traceback and chaining untouched.
        # Cancellation still goes through the task group above: it is how an enclosing cancel
        # scope recognises its own cancellation.
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)
        return None

    def _fresh_actors(self, mode: _testmode.TestMode | None) -> None:
        """
        Entering again (or under ``supervisor.testing``): a fresh actor for every dependency,
        from the policies it was registered with, and its handle attached to it.
        """
        if self._phase == _CLOSED:
            self._hub = EventHub()  # the last run's hub ended its streams
        for name, spec in self._specs.items():
            actor = Actor(
                name, self._registered[name], **(spec if mode is None else mode.policies(spec))
            )
            self._actors[name] = actor
            # This module's handle; the supervisor is the only one that points it elsewhere.
            self._handles[name]._attach(actor)  # noqa: SLF001

    def _start_actor(self, actor: Actor) -> None:
        assert self._runtime is not None
        assert self._task_group is not None
        actor.start(self._runtime, paths_for(self._backend))
        self._task_group.start_soon(actor.serve, name=f"ringfence actor {actor.name!r}")

    def _may_restart(self, crash_times: deque[float], now: float) -> bool:
        """Restart policy: at most ``max_restarts`` crashes within ``restart_window``."""
        while crash_times and now - crash_times[0] > self._restart_window:
            crash_times.popleft()
        crash_times.append(now)
        return len(crash_times) <= self._max_restarts

    # ==========================================================================================
    # Calls

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        """
        Call the dependency *name* with ``*args, **kwargs`` through its policies.

        Returns:
            The dependency's result, or the fallback's.

        Raises:
            UnknownDependency: no dependency is registered as *name*.
            BreakerOpen, BulkheadFull: rejected at once (unless the fallback answers).
            AttemptTimeout, DeadlineExceeded: ran out of time (unless the fallback answers).
            SupervisorClosed: the supervisor is not running, or left while the call ran.
            DependencyCrashed: the dependency's actor crashed.
            Exception: the dependency's own last exception, unchanged but for a note.
        """
        try:
            actor = self._actors[name]
        except (KeyError, TypeError):
            return _raise(UnknownDependency(name, self._actors))
        # The actor's coroutine itself, not one more layer around it (see Dependency).
        return actor.entry(args, kwargs, None)

    def stream(self, name: str, /, *args: Any, **kwargs: Any) -> Stream[Any]:
        """
        A streamed call: ``async with supervisor.stream("llm", prompt) as items:`` then
        ``async for item in items``. *name*'s function is an async generator function, or
        returns an async iterable (or an awaitable of one). The bulkhead slot is held from
        the first request until the stream closes; retries and the fallback only before the
        first item reaches the caller; ``Timeout(first_item=..., between_items=...)``
        bound the waits for items. See the README's "Streaming calls".

        Raises:
            UnknownDependency: no dependency is registered as *name*.
        """
        from ._stream import Stream

        return Stream(self._actor(name), args, kwargs)

    # ==========================================================================================
    # Manual control (acknowledged by the dependency's actor)

    async def isolate(
        self, name: str, *, reason: str = "manual", scope: str = "local"
    ) -> Transition:
        """
        Hold *name*'s breaker open until :meth:`reset` or :meth:`force_half_open`; queued
        calls fail with ``BreakerOpen`` at once. ``scope="cluster"`` (with ``shared=``) also
        isolates it on every replica.

        Raises:
            UnknownDependency, SupervisorClosed, policies.IllegalTransition (already isolated),
            ValueError (an unknown scope, or "cluster" without shared state).
        """
        actor = self._actor(name)
        shared = self._cluster_scope(scope)
        transition: Transition = await actor.control("isolate", reason)
        if shared is not None:
            await shared.isolate(name, reason)
        return transition

    async def force_half_open(self, name: str, *, reason: str = "manual") -> Transition:
        """
        Let ``half_open_probes`` trial calls through *name* now.

        Raises:
            UnknownDependency, SupervisorClosed, policies.IllegalTransition (already half-open).
        """
        transition: Transition = await self._actor(name).control("force_half_open", reason)
        return transition

    async def reset(self, name: str, *, reason: str = "manual", scope: str = "local") -> Transition:
        """
        Close *name*'s breaker and forget its failure counts (also revives a crashed one).
        ``scope="cluster"`` (with ``shared=``) also lifts a cluster-wide isolation or open
        verdict.

        Raises:
            UnknownDependency, SupervisorClosed, ValueError (an unknown scope, or "cluster"
            without shared state).
        """
        actor = self._actor(name)
        shared = self._cluster_scope(scope)
        transition: Transition = await actor.control("reset", reason)
        if shared is not None:
            await shared.reset(name)
        return transition

    def _cluster_scope(self, scope: str) -> SharedState | None:
        if scope == "local":
            return None
        if scope != "cluster":
            msg = f"'scope' must be 'local' or 'cluster', got {scope!r}"
            raise ValueError(msg)
        if self._shared is None:
            msg = "scope='cluster' needs shared state: Supervisor(shared=RedisShared(...))"
            raise ValueError(msg)
        return self._shared

    def cluster_status(self) -> Mapping[str, Any]:
        """
        Every live replica's summary and the shared verdicts, as the shared state last saw
        them.

        Raises:
            ValueError: the supervisor has no shared state.
        """
        if self._shared is None:
            msg = "cluster_status() needs shared state: Supervisor(shared=RedisShared(...))"
            raise ValueError(msg)
        return self._shared.cluster_status()

    async def reconfigure(
        self,
        name: str,
        *,
        retry: Retry | Unset | None = UNSET,
        breaker: Breaker | Unset | None = UNSET,
        timeout: Timeout | Unset | None = UNSET,  # noqa: ASYNC109  # the policy, not a deadline
        bulkhead: Bulkhead | Unset | None = UNSET,
        fallback: Callable[..., Any] | Unset | None = UNSET,
        fallback_on: ErrorSpec | Unset = UNSET,
        rate_limit: RateLimits | Unset = UNSET,
        hedge: Hedge | Unset | None = UNSET,
        chaos: Chaos | Unset | None = UNSET,
    ) -> None:
        """
        Swap *name*'s policies while it runs; what is not given stays. The actor handles it
        as a control message and acknowledges it: when this returns, the next call uses the
        new policies. Counters, latencies and status are kept; calls in flight finish under
        the policies they started with. A new breaker starts closed (isolated stays
        isolated); a larger bulkhead lets queued calls in at once; new rate limits start
        with full buckets.

        Every argument is checked as :meth:`register` checks it, with the same errors; a
        refused change changes nothing.

        Raises:
            UnknownDependency, SupervisorClosed, TypeError (a policy of the wrong type; a
            fallback that is not callable, is a generator function, or cannot take
            ``(error, *args, **kwargs)`` for the registered function's parameters),
            ValueError (a bad ``fallback_on`` or ``rate_limit``, as for :meth:`register`).
        """
        actor = self._actor(name)
        changes: dict[str, Any] = {}
        for key, value in (
            ("retry", retry),
            ("breaker", breaker),
            ("timeout", timeout),
            ("bulkhead", bulkhead),
            ("hedge", hedge),
            ("chaos", chaos),
        ):
            if not isinstance(value, Unset):
                changes[key] = check_policy(key, value)
        if not isinstance(fallback, Unset):
            check_fallback(self._registered[name], fallback)
            changes["fallback"] = fallback
        if not isinstance(fallback_on, Unset):
            changes["fallback_on"] = ErrorFilter.of(fallback_on, name="fallback_on")
        if not isinstance(rate_limit, Unset):
            changes["rate_limit"] = check_policy("rate_limit", rate_limit)
            self._check_reserve(name, changes["rate_limit"])
        await actor.control("reconfigure", "reconfigure", changes)

    def _check_reserve(self, name: str, limits: tuple[RateLimit, ...]) -> None:
        """
        ``RateLimit(reserve=...)`` is kept by local limits only: with shared state every limit
        is the fleet's, whose leases keep no reserve, so a reserve would be silently ignored.
        """
        if self._shared is None:
            return
        for limit in limits:
            if limit.reserve:
                msg = (
                    f"{name!r}: RateLimit(reserve={limit.reserve!r}) is kept by local limits"
                    " only, and with shared= state every rate limit is the fleet's, which keeps"
                    " no reserve: drop reserve, or register this dependency on a supervisor"
                    " without shared state"
                )
                raise ValueError(msg)

    def _actor(self, name: str) -> Actor:
        try:
            return self._actors[name]
        except (KeyError, TypeError):
            raise UnknownDependency(name, self._actors) from None

    def priority(self, level: int) -> AbstractContextManager[int]:
        """
        ``with supervisor.priority(Priority.CRITICAL): ...``: every call and stream made in
        the block (through any code it runs, any supervisor) carries *level*, an int from 0
        (``Priority.SHEDDABLE``) to 9 (``Priority.CRITICAL``), higher first. Under load a
        higher level takes a full bulkhead queue's place from the lowest queued call, gets
        freed slots first, and may use a rate limit's ``reserve``; ``Priority.DEFAULT`` (5)
        without a block. Outside supervisor calls the block does nothing.

        Raises:
            TypeError: *level* is not an int (or is a bool).
            ValueError: *level* is outside 0-9.
        """
        return _priority.priority(level)

    # ==========================================================================================
    # Events

    def events(
        self, kinds: Iterable[str | type[Event]] | None = None, buffer: int = 1000
    ) -> EventStream:
        """
        Subscribe to what the dependencies' actors decide: breaker transitions, retries,
        rejections, crashes, pauses, retries refused by the budget. Never per successful call.

        ``async for event in supervisor.events(): ...``, or ``async with supervisor.events() as
        stream:``. The subscription starts when this returns; leaving the ``async for`` (or the
        ``async with``) ends it. A subscriber that does not keep up loses its oldest events,
        and the next one it reads carries ``dropped=n``: a slow reader never slows a call.
        The stream ends when the supervisor leaves ``async with``.

        Args:
            kinds: event classes (``supervisor.BreakerTransition``) or their ``kind`` strings
                to receive; ``None`` for all.
            buffer: events kept for this subscriber at most.

        Raises:
            ValueError: an unknown kind, or ``buffer < 1``.
            TypeError: ``buffer`` is not an int.
        """
        return self._hub.subscribe(kinds, buffer)

    @property
    def subscribers(self) -> int:
        """Event streams open now (``events()`` subscriptions not ended yet); read-only."""
        return self._hub.subscribers

    # ==========================================================================================
    # Snapshots

    @overload
    def status(self, name: str) -> DependencyStatus: ...

    @overload
    def status(self) -> Mapping[str, DependencyStatus]: ...

    def status(self, name: str | None = None) -> DependencyStatus | Mapping[str, DependencyStatus]:
        """
        A frozen :class:`DependencyStatus` for *name*, or a mapping of all of them.

        Raises:
            UnknownDependency: *name* is not registered.
        """
        if name is not None:
            return self._actor(name).status()
        # tuple() copies the registry in one step: a dependency registered meanwhile (by the
        # loop, while another thread reads this) cannot break the iteration.
        return {n: actor.status() for n, actor in tuple(self._actors.items())}

    def health(self) -> Health:
        """``healthy`` when every dependency is closed; ``unhealthy`` when every one, or a
        critical one, is down (open or isolated); ``degraded`` otherwise, and while shared
        state (``shared=``) cannot be reached (``reason`` says why)."""
        actors = dict(self._actors)  # one step: see status()
        states = {n: actor.status().state for n, actor in actors.items()}
        down = tuple(n for n, s in states.items() if s in (State.OPEN, State.ISOLATED))
        critical_down = tuple(n for n in down if actors[n].critical)
        if all(s is State.CLOSED for s in states.values()):
            verdict = HealthStatus.HEALTHY
        elif critical_down or len(down) == len(states):
            verdict = HealthStatus.UNHEALTHY
        else:
            verdict = HealthStatus.DEGRADED
        reason = self._shared.degraded() if self._shared is not None else None
        if reason is not None and verdict is HealthStatus.HEALTHY:
            verdict = HealthStatus.DEGRADED
        return Health(
            status=verdict, down=down, critical_down=critical_down, states=states, reason=reason
        )

    # ==========================================================================================
    # Replica hooks: what shared state (supervisor.integrations.redis) may use

    def replica_dependencies(self) -> Mapping[str, ReplicaDependency]:
        """The registered dependencies' actors by name, a snapshot (see ``_runtime.Replica``)."""
        return dict(self._actors)

    async def wait_closing(self) -> None:
        """Return when the supervisor starts leaving ``async with`` (at once if it has)."""
        await self._closing.wait()

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Names of the registered dependencies, in registration order."""
        return tuple(self._actors)

    def __repr__(self) -> str:
        phase = ("new", "running", "closed")[self._phase]
        return f"<Supervisor {phase} dependencies={list(self._actors)!r}>"


async def _raise(error: Exception) -> Any:
    """Raise *error* when awaited, so ``call()`` raises at ``await`` like an ``async def``."""
    raise error
