"""
Fault injection at run time: ``policies.Chaos`` applied by wrapping a dependency's function
when it is configured (``Actor._apply``, through its :class:`Faults`), so a dependency
without it runs exactly as before, with nothing checked per call. The draw, its count and
its event are the actor's (``Actor.chaos_drawn``), on the event loop: a sync function's
wrapper, in its worker thread, asks the loop for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, final

import anyio
import anyio.from_thread

from policies.chaos import NO_RESULT, Chaos

from ._spec import awaiting

__all__ = ("Faults", "wrap")


@final
class Faults:
    """
    A dependency's function as its calls reach it: the function itself, or wrapped with the
    Chaos configured. Owned by the actor, whose ``fn`` is what :meth:`inject` and
    :meth:`learned_async` return.
    """

    __slots__ = ("_drawn", "_is_async", "_stream", "_unwrapped", "chaos")

    def __init__(
        self,
        fn: Callable[..., Any],
        drawn: Callable[[Chaos], bool],
        *,
        is_async: bool,
        stream: bool,
    ) -> None:
        self._unwrapped = fn
        self._drawn = drawn  # the actor's draw: counted and published
        self._is_async, self._stream = is_async, stream
        self.chaos: Chaos | None = None

    def inject(self, chaos: Chaos | None) -> Callable[..., Any]:
        """The function to call from now on: *chaos* injected, or none (``None``)."""
        self.chaos = chaos
        if chaos is None:
            return self._unwrapped
        return wrap(
            self._unwrapped, chaos, self._drawn, is_async=self._is_async, stream=self._stream
        )

    def learned_async(self) -> Callable[..., Any]:
        """The sync function returned an awaitable (``Actor.learned_async``): awaited now."""
        self._unwrapped = awaiting(self._unwrapped)
        self._is_async = True
        return self.inject(self.chaos)


async def _items(result: object) -> AsyncIterator[object]:
    """A stream's substitute: *result*'s items."""
    for item in result if isinstance(result, Iterable) else (result,):
        yield item


def wrap(
    fn: Callable[..., Any],
    chaos: Chaos,
    drawn: Callable[[Chaos], bool],
    *,
    is_async: bool,
    stream: bool,
) -> Callable[..., Any]:
    """*fn*, with *chaos* injected into the calls *drawn* says."""
    if is_async or stream:

        async def chaotic(*args: object, **kwargs: object) -> object:
            if drawn(chaos):
                if chaos.latency is not None:
                    await anyio.sleep(chaos.latency)
                if chaos.error is not None:
                    raise chaos.make_error()
                if chaos.result is not NO_RESULT:
                    return _items(chaos.result) if stream else chaos.result
            result = fn(*args, **kwargs)
            return result if stream else await result

        return chaotic

    def chaotic_sync(*args: object, **kwargs: object) -> object:  # in a worker thread
        if anyio.from_thread.run_sync(drawn, chaos):
            if chaos.latency is not None:
                time.sleep(chaos.latency)
            if chaos.error is not None:
                raise chaos.make_error()
            if chaos.result is not NO_RESULT:
                return chaos.result
        return fn(*args, **kwargs)

    return chaotic_sync
