"""
Fault injection at run time: ``policies.Chaos`` applied by wrapping a dependency's function
when it is configured (``Actor._apply``, through its :class:`Faults`), so a dependency
without it runs exactly as before, with nothing checked per call. The draw, its count (in
the actor's ledger) and its event are made on the event loop (:meth:`Faults.drawn`): a sync
function's wrapper, in its worker thread, asks the loop for it.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.from_thread

from policies.chaos import NO_RESULT, Chaos

from ._events import ChaosInjected
from ._spec import awaiting

if TYPE_CHECKING:
    from ._ledger import Ledger

__all__ = ("Faults", "wrap")


@final
class Faults:
    """
    A dependency's function as its calls reach it: the function itself, or wrapped with the
    Chaos configured, and the draws. Owned by the actor, whose ``fn`` is what :meth:`inject`
    and :meth:`learned_async` return; the draws use the supervisor's rng (:meth:`attach`).
    """

    __slots__ = ("_is_async", "_ledger", "_publish", "_rng", "_stream", "_unwrapped", "chaos")

    def __init__(
        self,
        fn: Callable[..., Any],
        ledger: Ledger,
        publish: Callable[..., None],
        *,
        is_async: bool,
        stream: bool,
    ) -> None:
        self._unwrapped = fn
        self._ledger, self._publish = ledger, publish  # the actor's: counted and told
        self._rng = random.Random()  # (the supervisor's, from attach)
        self._is_async, self._stream = is_async, stream
        self.chaos: Chaos | None = None

    def attach(self, rng: random.Random) -> None:
        """The supervisor started: draw from *rng*."""
        self._rng = rng

    def drawn(self, chaos: Chaos) -> bool:
        """Whether *chaos* injects into this call: the draw, counted and told."""
        if not chaos.draw(self._rng):
            return False
        injected = chaos.injects()
        self._ledger.injected(injected)
        error = chaos.error
        self._publish(
            ChaosInjected,
            injected=injected,
            latency=chaos.latency,
            error=None if error is None else getattr(error, "__name__", type(error).__name__),
        )
        return True

    def inject(self, chaos: Chaos | None) -> Callable[..., Any]:
        """The function to call from now on: *chaos* injected, or none (``None``)."""
        self.chaos = chaos
        if chaos is None:
            return self._unwrapped
        return wrap(
            self._unwrapped, chaos, self.drawn, is_async=self._is_async, stream=self._stream
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
