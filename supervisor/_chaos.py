"""
Fault injection at run time: ``policies.Chaos`` applied by wrapping a dependency's function
when it is configured (``Actor._apply``), so a dependency without it runs exactly as before,
with nothing checked per call. The draw, its count and its event are the actor's
(``Actor.chaos_drawn``), on the event loop: a sync function's wrapper, in its worker thread,
asks the loop for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import anyio.from_thread

from policies.chaos import NO_RESULT, Chaos

__all__ = ("wrap",)


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
