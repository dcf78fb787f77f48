"""
Bulkhead: how many calls may run at once, and how many may wait for a slot.

The runtime keeps the slots and a queue inside the dependency's actor (highest priority
first, first in first out within a level: ``policies.priority``). A call that finds every
slot taken waits in the queue if there is a place, and fails at once with ``BulkheadFull``
if there is none (unless a call of a lower priority waits: the newest of the lowest level
gives its place up). Backoff sleeps between retries hold no slot.

``max_concurrent`` is a number, or an :class:`~policies.concurrency.AdaptiveLimit`: a limit
the runtime moves with the dependency's measured latency (queueing and rejections work the
same).
"""

from __future__ import annotations

from typing import final

import attrs

from ._validators import integer
from .concurrency import AdaptiveLimit

__all__ = ("Bulkhead",)


@final
@attrs.frozen(kw_only=True)
class Bulkhead:
    """
    Concurrency limit for one dependency.

    Args:
        max_concurrent: calls running at once: an int ``>= 1``, or an
            :class:`~policies.concurrency.AdaptiveLimit` that finds the number itself.
        max_queued: calls waiting for a slot (highest priority first, FIFO within a level),
            ``>= 0``; 0 fails at once when full.

    Raises:
        TypeError, ValueError: an argument is not an int in range (nor an ``AdaptiveLimit``).
    """

    max_concurrent: int | AdaptiveLimit = attrs.field()
    max_queued: int = attrs.field(default=0, validator=integer(ge=0))

    @max_concurrent.validator
    def _check_max_concurrent(self, _attribute: object, value: object) -> None:
        if isinstance(value, AdaptiveLimit):
            return
        if isinstance(value, bool) or not isinstance(value, int):
            # (the message every int argument gives; the docstring names AdaptiveLimit)
            msg = f"'max_concurrent' must be an int >= 1, got {value!r} of type {type(value).__name__}"
            raise TypeError(msg)
        if value < 1:
            msg = f"'max_concurrent' must be an int >= 1, got {value!r}"
            raise ValueError(msg)
