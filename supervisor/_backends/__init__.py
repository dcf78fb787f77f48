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
* ``_trio``: the trio attempt's template (one ``CancelScope``, cancelled to cut it off);
  ``_generated_trio`` the same with the handlers inlined, written by ``_generate`` too; with
  ``_trio_general``: the queued calls' waiters (a parked task each), timers, delivery.
* ``_threads``: a sync callable's worker threads.

A backend module is imported on first use, so asyncio never imports trio.
"""

from __future__ import annotations

import os

from supervisor._runtime import Paths

__all__ = ("paths_for",)


def paths_for(backend: str) -> Paths:
    """The paths for *backend* (``"asyncio"`` or ``"trio"``)."""
    template = os.environ.get("RINGFENCE_INLINE", "1") == "0"
    if backend == "trio" and template:
        from . import _trio

        return _trio.PATHS
    if backend == "trio":
        from . import _generated_trio

        return _generated_trio.PATHS
    if template:
        from . import _asyncio

        return _asyncio.PATHS
    from . import _generated_asyncio

    return _generated_asyncio.PATHS
