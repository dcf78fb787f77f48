"""
The attempt paths of each backend, chosen once when the supervisor starts (anyio's
``get_async_backend`` habit) and bound to each actor: :func:`paths_for`.

* ``_asyncio``: the attempt's **template** (plain code calling the actor's ``@inline``
  handlers), its fast path and its way with a ``Running`` record (a timer, a thread, or
  re-entry) in one coroutine; ``_asyncio_general``: the delivery of a cut-off, the queued
  calls' waiters (a loop future each).
* ``_generated_asyncio``: the fast path with the ``@inline`` handlers' bodies inlined,
  written by ``_generate`` from the template (``make generate``); what asyncio runs, unless
  ``RINGFENCE_INLINE=0`` asks for the template (CI runs the runtime tests once that way).
* ``_trio``: the trio attempt (one ``CancelScope``, cancelled to cut it off) and the
  queued calls' waiters (a parked task each).
* ``_threads``: a sync callable's worker threads.

A backend module is imported on first use, so asyncio never imports trio.
"""

from __future__ import annotations

import os

from supervisor._runtime import Paths

__all__ = ("paths_for",)


def paths_for(backend: str) -> Paths:
    """The paths for *backend* (``"asyncio"`` or ``"trio"``)."""
    if backend == "trio":
        from . import _trio

        return _trio.PATHS
    if os.environ.get("RINGFENCE_INLINE", "1") == "0":
        from . import _asyncio

        return _asyncio.PATHS
    from . import _generated_asyncio

    return _generated_asyncio.PATHS
