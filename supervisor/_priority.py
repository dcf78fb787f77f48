"""
The caller's priority (issue 20, part 3): a context variable, so ``with
supervisor.priority(level):`` reaches every call and stream made in that block, through the
caller's own code, without touching the dependency's arguments. It is read only where a
priority can change an outcome: when a call must queue for a slot (``_admission``), is
refused a slot or a rate-limit turn, or meets a limit with a reserve. A call that finds a
free slot never reads it. Outside any supervisor call the variable is simply unused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Final

from policies.priority import Priority, check_level

__all__ = ("current", "priority")

_LEVEL: Final[ContextVar[int]] = ContextVar("ringfence_priority", default=int(Priority.DEFAULT))

#: The caller's level now: ``Priority.DEFAULT`` unless a ``priority()`` block set one.
current: Final = _LEVEL.get


def priority(level: int) -> AbstractContextManager[int]:
    """
    Calls made in the block carry *level*, checked here, at once (``policies.priority``):
    ``TypeError`` / ``ValueError`` naming it.
    """
    return _block(check_level(level))


@contextmanager
def _block(level: int) -> Iterator[int]:
    token = _LEVEL.set(level)
    try:
        yield level
    finally:
        _LEVEL.reset(token)
