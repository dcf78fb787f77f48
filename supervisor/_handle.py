"""
The handles a registration gives out: :class:`Dependency` (``await handle(*args)`` is a call
through the dependency's actor, typed as the function it protects) and :class:`Protect`, what
``@supervisor.protect(...)`` returns to decorate a function with.

They hold an actor and hand it calls; they never build or register one: ``Supervisor`` does
(``_supervisor.py``), and attaches a fresh actor to a handle when it is entered again.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    ParamSpec,
    TypeVar,
    final,
    overload,
)

from ._actor import Actor
from ._status import DependencyStatus

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ("Dependency", "Protect")

P = ParamSpec("P")
R = TypeVar("R")
_P2 = ParamSpec("_P2")
_S = TypeVar("_S")
_F = TypeVar("_F", bound=Callable[..., Any])


async def _coroutine_function(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover
    """Never called: its code object marks a handle as a coroutine function (see Dependency)."""


#: What ``inspect.iscoroutinefunction`` reads on a function-like object (Python 3.11 has no
#: ``inspect.markcoroutinefunction``; its check accepts any object that looks like a function,
#: as Cython's do: a ``__code__`` with ``CO_COROUTINE``, a ``__name__``, ``__defaults__``...).
_COROUTINE_CODE: Final = _coroutine_function.__code__


@final
class Dependency(Generic[P, R]):
    """
    A typed handle to a registered dependency: ``await handle(*args)`` is
    ``await supervisor.call(name, *args)`` and keeps the callable's parameter and return types.

    It looks like the function it protects (``functools.update_wrapper``: ``__name__``,
    ``__qualname__``, ``__doc__``, ``__wrapped__``, so ``inspect.signature`` reads the
    function's) and like a coroutine function (``inspect.iscoroutinefunction(handle)``), so
    frameworks await it. A handle made by ``@supervisor.protect`` on a method binds ``self``
    as a function does.
    """

    __slots__ = ("__dict__", "_actor", "_binds", "_supervisor", "name")

    # With __code__ (set per handle), what inspect's function-likeness check asks for.
    __defaults__: Final = None
    __kwdefaults__: Final = None

    def __init__(
        self, supervisor: object, actor: Actor, fn: Callable[..., Any], *, binds: bool = False
    ) -> None:
        self._supervisor = supervisor
        self._actor = actor
        self._binds = binds
        self.name = actor.name
        # A function's attributes are copied as functools.wraps copies them; a callable
        # object's __dict__ is its state, not attributes of a function: left alone.
        plain = inspect.isfunction(fn) or inspect.ismethod(fn)
        functools.update_wrapper(self, fn, updated=functools.WRAPPER_UPDATES if plain else ())
        if not isinstance(self.__dict__.get("__name__"), str):
            self.__dict__["__name__"] = self.__dict__["__qualname__"] = actor.name
        if not actor.stream_only:  # an async generator function's handle is no coroutine one
            self.__dict__["__code__"] = _COROUTINE_CODE

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        # Returns the actor's coroutine itself rather than wrapping it in one more: each
        # coroutine layer costs ~80 ns, about the price of the call being protected.
        return self._actor.entry(args, kwargs, None)  # type: ignore[return-value]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Dependency[P, R]: ...

    @overload
    def __get__(
        self: Dependency[Concatenate[_S, _P2], R], instance: _S, owner: type | None = None
    ) -> Callable[_P2, Coroutine[Any, Any, R]]: ...

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """A method's handle (``@supervisor.protect`` in a class) binds ``self`` on access."""
        if instance is None or not self._binds:
            return self
        return types.MethodType(self, instance)

    def stream(self, *args: P.args, **kwargs: P.kwargs) -> Stream[R]:
        """``supervisor.stream(name, *args, **kwargs)`` for this dependency."""
        from ._stream import Stream

        return Stream(self._actor, args, kwargs)

    def status(self) -> DependencyStatus:
        """This dependency's :class:`DependencyStatus`."""
        return self._actor.status()

    def typed_as(self, fn: _F, /) -> _F:
        """
        This handle, typed as *fn* (the function it was registered with): an overloaded
        function (openai's ``create(..., stream=True)``) keeps every overload, which a
        ``Dependency[P, R]`` cannot carry. *fn* should be an ``async`` function (or one
        returning an awaitable): the handle is awaited as it is.

        Raises:
            TypeError: *fn* is not the function this dependency was registered with.
        """
        if fn != self.__dict__["__wrapped__"]:
            msg = f"typed_as({fn!r}): {self.name!r} was registered with another function"
            raise TypeError(msg)
        return self  # type: ignore[return-value]

    def _attach(self, actor: Actor) -> None:
        """The supervisor's, when it is entered again: calls go to the fresh *actor*."""
        self._actor = actor

    def __repr__(self) -> str:
        return f"<Dependency {self.name!r}>"


@final
class Protect:
    """What ``@supervisor.protect(...)`` returns: registers the function it decorates."""

    __slots__ = ("_add", "_name", "_policies")

    def __init__(
        self, add: Callable[..., Dependency[Any, Any]], name: str | None, policies: dict[str, Any]
    ) -> None:
        self._add = add
        self._name = name
        self._policies = policies

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Dependency[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Dependency[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Dependency[Any, Any]:
        name = self._name
        if name is None:
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
            if not isinstance(name, str):
                msg = f'cannot name {fn!r}: pass one, @supervisor.protect("name")'
                raise TypeError(msg)
        return self._add(name, fn, binds=True, **self._policies)
