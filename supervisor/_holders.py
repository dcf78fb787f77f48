"""
The streams holding one of a dependency's bulkhead slots (issue 17): a stream holds its slot
from its admission until it closes (``_stream.Stream``), and the supervisor leaving cuts off
every stream still holding one (``Actor.close``).

Owned by the actor (``Actor.streams``): the stream registers itself (:meth:`Holders.hold`)
and hands its slot to a hedged race's winner (:meth:`Holders.adopt`) through these methods;
giving a slot back is the actor's (``Actor.release_stream``), which counts the slots.
Nothing else writes it.
"""

from __future__ import annotations

from typing import Protocol, final

__all__ = ("Holder", "Holders")


class Holder(Protocol):
    """A stream holding a slot: the supervisor leaving cuts it off."""

    def cut_off(self) -> None: ...


@final
class Holders:
    """One dependency's streams holding a slot, in the order they took it."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[Holder, None] = {}

    def hold(self, stream: Holder) -> None:
        """*stream* holds a slot from now on."""
        self._held[stream] = None

    def adopt(self, sibling: Holder, stream: Holder) -> None:
        """*stream* takes over the slot *sibling* holds (a hedged stream's winner)."""
        del self._held[sibling]
        self._held[stream] = None

    def release(self, stream: Holder) -> None:
        """*stream* holds its slot no longer (the actor takes the slot back)."""
        del self._held[stream]

    def cut_all(self) -> None:
        """The supervisor leaves: every stream still holding a slot is cut off."""
        for stream in list(self._held):
            stream.cut_off()
