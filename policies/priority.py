"""
Priorities under load: the levels (:class:`Priority`), the bulkhead queue ordered by them
(:class:`PriorityQueue`), and a rate limit's reserve (:func:`reserve_headroom`).

Theory of operation
-------------------
A call's priority is an int from :data:`LOWEST` (0) to :data:`HIGHEST` (9), **higher is
more important**; three levels are named: ``Priority.SHEDDABLE`` (0, the lowest: batch work
that may be dropped), ``Priority.DEFAULT`` (5, a call nobody gave a priority) and
``Priority.CRITICAL`` (9, the highest: an interactive user waiting). The ints between are
there for finer orders (``Priority.DEFAULT + 1``). Anything else is refused by
:func:`check_level` (``TypeError`` for a non-int or a bool, ``ValueError`` out of range).

Rules the queue keeps (the runtime, ``supervisor/_actor.py``, only applies them):

1. *Highest first, FIFO within a level.* A free slot goes to the oldest call of the highest
   level waiting (:meth:`PriorityQueue.pop_next`). With one level only, that is plain FIFO.
2. *A full queue makes room for a higher level only.* A call arriving at a full queue takes
   the place of the lowest-level call waiting, the newest of that level (it waited least),
   when that level is below its own (:meth:`PriorityQueue.victim`); otherwise the arriving
   call is the one refused. Equals never displace each other: among equals the queue stays
   FIFO and the newcomer is refused, as without priorities.
3. *Every call leaves exactly once*: granted (``pop_next``), displaced (``victim`` then
   ``remove``), withdrawn (``remove``: cancelled, timed out) or failed with the rest
   (``drain``). ``remove`` of a call no longer there is a no-op that says so.

A rate limit's reserve (``RateLimit(..., reserve=0.1)``): a call of the lowest level
(``SHEDDABLE``) must leave that share of the limit's burst in the bucket, so the last 10 % are
only ever taken by calls above it. :func:`reserve_headroom` gives the burst such a call
sees; the GCRA machine (``policies.rate_limit``) admits against it. Higher levels see the
whole burst. A call that costs more than that headroom but fits the burst still conforms
once the bucket is otherwise empty (its headroom is at least its own cost): a reserve
delays sheddable calls, it never makes one impossible that the limit allows.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Final, TypeVar, final

__all__ = (
    "HIGHEST",
    "LOWEST",
    "Priority",
    "PriorityQueue",
    "check_level",
    "level_name",
    "reserve_headroom",
)

_T = TypeVar("_T")

#: The lowest and the highest priority level.
LOWEST: Final = 0
HIGHEST: Final = 9


@final
class Priority(enum.IntEnum):
    """The named priority levels; higher is more important (any int 0-9 is a level)."""

    #: The lowest: work that may be dropped under load (batch jobs, prefetches).
    SHEDDABLE = 0
    #: A call made with no priority set.
    DEFAULT = 5
    #: The highest: a user is waiting for it.
    CRITICAL = 9


_NAMES: Final = {int(level): level.name.lower() for level in Priority}


def check_level(level: object) -> int:
    """
    *level* as a priority level (an int from 0 to 9), or a clear error naming it.

    Raises:
        TypeError: *level* is not an int (a bool, a float, a string: ``"critical"``).
        ValueError: *level* is an int outside 0-9.
    """
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(
            f"priority level must be a Priority or an int from {LOWEST} to {HIGHEST},"
            f" got {level!r} ({type(level).__name__})"
        )
    if not LOWEST <= level <= HIGHEST:
        raise ValueError(
            f"priority level must be from {LOWEST} (Priority.SHEDDABLE) to {HIGHEST}"
            f" (Priority.CRITICAL), got {level!r}"
        )
    return int(level)


def level_name(level: int) -> str:
    """How a level is shown (status, metric labels): its name when named, else the int."""
    return _NAMES.get(level) or str(level)


def reserve_headroom(burst: float, reserve: float, level: int, cost: float) -> float:
    """
    The burst a call of *level* and *cost* may fill a limit up to, given its *reserve*
    (a share of *burst*, 0 <= reserve < 1): the whole *burst* above the lowest level; for the
    lowest, ``burst * (1 - reserve)``, but never less than *cost* (capped at *burst*), so a
    call the limit admits at all stays admissible (see the module docstring).
    """
    if level > LOWEST or reserve <= 0.0:
        return burst
    headroom = burst * (1.0 - reserve)
    if headroom < cost:
        return cost if cost < burst else burst
    return headroom


@final
class PriorityQueue(dict[_T, int]):
    """
    Calls waiting for a slot, each with its level: a dict of item -> level in arrival order
    (so ``len()``, ``bool()`` and ``in`` are a dict's, costing the runtime nothing), plus one
    FIFO per level present. Ordering and eviction follow the module's rules 1-3.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        super().__init__()
        # level -> its items, oldest first; only levels with an item are keys.
        self._levels: dict[int, OrderedDict[_T, None]] = {}

    def push(self, item: _T, level: int) -> None:
        """*item* waits at the end of its *level*."""
        self[item] = level
        fifo = self._levels.get(level)
        if fifo is None:
            fifo = self._levels[level] = OrderedDict()
        fifo[item] = None

    def pop_next(self) -> _T:
        """The next item to get a slot (rule 1), removed. ``KeyError`` when empty."""
        levels = self._levels
        top = max(levels) if len(levels) > 1 else next(iter(levels))
        fifo = levels[top]
        item, _ = fifo.popitem(last=False)
        if not fifo:
            del levels[top]
        del self[item]
        return item

    def victim(self, level: int) -> _T | None:
        """
        The item a newcomer of *level* displaces from a full queue (rule 2): the newest of
        the lowest level present, if that is below *level*; else ``None`` (the newcomer is
        refused). Nothing is removed.
        """
        levels = self._levels
        if not levels:
            return None
        low = min(levels)
        if low >= level:
            return None
        return next(reversed(levels[low]))

    def remove(self, item: _T) -> bool:
        """Take *item* out wherever it waits; False when it is not waiting (rule 3)."""
        level = self.pop(item, None)
        if level is None:
            return False
        fifo = self._levels[level]
        del fifo[item]
        if not fifo:
            del self._levels[level]
        return True

    def drain(self) -> list[_T]:
        """Every item, in arrival order; the queue is left empty."""
        items = list(self)
        self.clear()
        self._levels.clear()
        return items

    def levels(self) -> dict[int, int]:
        """Level -> how many wait at it (for tests and status)."""
        return {level: len(fifo) for level, fifo in self._levels.items()}
