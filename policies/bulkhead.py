"""
Bulkhead: how many calls may run at once, and how many may wait for a slot.

The runtime keeps the slots and a FIFO queue inside the dependency's actor. A call that finds
every slot taken waits in the queue if there is a place, and fails at once with
``BulkheadFull`` if there is none. Backoff sleeps between retries hold no slot.
"""

from __future__ import annotations

from typing import final

import attrs

from ._validators import integer

__all__ = ("Bulkhead",)


@final
@attrs.frozen(kw_only=True)
class Bulkhead:
    """
    Concurrency limit for one dependency.

    Args:
        max_concurrent: calls running at once, ``>= 1``.
        max_queued: calls waiting (FIFO) for a slot, ``>= 0``; 0 fails at once when full.

    Raises:
        TypeError, ValueError: an argument is not an int in range.
    """

    max_concurrent: int = attrs.field(validator=integer(ge=1))
    max_queued: int = attrs.field(default=0, validator=integer(ge=0))
