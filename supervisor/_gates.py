"""
A dependency's two gates above its breaker (issue 17): a pause, for a rate-limited answer's
Retry-After (its own, or another replica's: ``Actor.shared_pause``), and the replicas' shared
open verdict (``Actor.shared_open``). While either is down every call takes the slow way
(``_admission``), which asks them here; the hot path never does: the actor's ``_derive``
shuts its one comparison's gate (``Actor._slots``) while :meth:`Gates.down` says so.

Owned by the actor (``Actor._gates``), attached to its clock at start. Nothing else writes
it: its state changes only in its own methods, which call the actor back (``_derive``)
whenever what :meth:`Gates.down` says changes. A pause's rejections are told once per pause.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from ._errors import BreakerOpen, RateLimited, not_started
from ._events import CallRejected, DependencyPaused

if TYPE_CHECKING:
    from ._ledger import Ledger

__all__ = ("Gates",)


@final
class Gates:
    """One dependency's pause and shared verdict, each an end time on the loop clock."""

    __slots__ = (
        "_changed",
        "_clock",
        "_ledger",
        "_name",
        "_publish",
        "_told",
        "forced_until",
        "paused_until",
    )

    def __init__(
        self,
        name: str,
        ledger: Ledger,
        publish: Callable[..., None],
        changed: Callable[[], None],
    ) -> None:
        """*changed*: called when :meth:`down` may say otherwise (the actor re-derives)."""
        self._name = name
        self._ledger, self._publish, self._changed = ledger, publish, changed
        self._clock: Callable[[], float] = not_started  # the loop's (attach)
        #: a rate-limited answer's Retry-After pauses admissions until then (read only)
        self.paused_until: float | None = None
        #: a shared open verdict from other replicas refuses calls until then (read only)
        self.forced_until: float | None = None
        self._told = False  # the current pause's first rejection was told

    def attach(self, clock: Callable[[], float]) -> None:
        """The supervisor started: its loop clock times the gates."""
        self._clock = clock

    def down(self) -> bool:
        """A gate holds calls: a pause or a shared verdict (until admission finds it over)."""
        return self.paused_until is not None or self.forced_until is not None

    def shut(self, now: float) -> bool:
        """A pause or a shared verdict refuses calls at *now* (no hedge starts)."""
        paused, forced = self.paused_until, self.forced_until
        return (paused is not None and now < paused) or (forced is not None and now < forced)

    def paused(self) -> bool:
        """The dependency is paused now."""
        until = self.paused_until
        return until is not None and self._clock() < until

    # -- the pause -------------------------------------------------------------------------------

    def pause(self, seconds: float, source: str = "local") -> None:
        """A rate-limited answer said "come back in *seconds*": pause admissions until then."""
        now = self._clock()
        until = now + seconds
        if self.paused_until is not None and until <= self.paused_until:
            return
        self.paused_until = until
        self._changed()  # every call goes to admit_slow until the pause ends
        self._publish(
            DependencyPaused,
            at=now,
            retry_after=seconds,
            until=until,
            until_wall=time.time() + seconds,
            source=source,
        )

    def end_pause(self) -> None:
        """Admission found the pause over."""
        self.paused_until = None
        self._told = False
        self._changed()

    def reject_paused(self, retry_after: float) -> RateLimited:
        """The pause turned a call away (it ends past the call's deadline): counted, the
        pause's first told."""
        self._ledger.rejection("paused")
        if not self._told:
            self._told = True
            self._publish(CallRejected, reason="paused", retry_after=retry_after)
        return RateLimited(self._name, retry_after)

    # -- the shared verdict ----------------------------------------------------------------------

    def shared_open(self, seconds: float | None) -> None:
        """Refuse calls for *seconds* (``None`` lifts the verdict)."""
        self.forced_until = None if seconds is None else self._clock() + seconds
        self._changed()

    def check_forced(self) -> None:
        """
        Admission, shared-verdict part: a ``BreakerOpen``, counted, while the verdict holds,
        else it is lifted. It only decides: what the refused call took (a breaker's probe
        permit) its caller gives back (``_admission``).
        """
        until = self.forced_until
        assert until is not None
        now = self._clock()
        if now < until:
            self._ledger.rejection("shared_open")
            raise BreakerOpen(self._name, until - now, "open")
        self.forced_until = None
        self._changed()

    # -- snapshots -------------------------------------------------------------------------------

    def fields(self, now: float) -> dict[str, Any]:
        """``DependencyStatus``'s fields of the gates at *now* (each read once: status() may
        run in another thread)."""
        paused, forced = self.paused_until, self.forced_until
        if paused is not None and now >= paused:
            paused = None
        return {
            "paused_until": paused,
            "pause_remaining": paused - now if paused is not None else 0.0,
            "shared_open_until": forced if forced is not None and now < forced else None,
        }
