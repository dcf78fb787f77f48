"""
What a dependency's actor tells the event hub, and so the log (ringfence's log lines are one
listener of the events).

A flood is told once: a breaker's rejections once per breaker epoch (the next transition
says how many there were), an adaptive limit's moves when more than a tenth from the last
one told. (A bulkhead's rejections, once per spell of full, are the actor's own: its flag is
reset on the hot path; a pause's, once per pause, its gates': ``_gates.Gates``.) Owned by its actor
(``Actor._tell``), attached to the supervisor's hub at start: nothing is decided before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from ._events import ActorCrashed, BreakerTransition, CallRejected, Event, LimitChanged

if TYPE_CHECKING:
    from policies import Transition

    from ._events import EventHub

__all__ = ("Teller",)


@final
class Teller:
    """One dependency's events: stamped with its name and time, throttled where they flood."""

    __slots__ = (
        "_clock",
        "_hub",
        "_limit_told",
        "_name",
        "_rejected_epoch",
        "_rejected_since",
    )

    def __init__(self, name: str) -> None:
        self._name = name
        self._hub: EventHub | None = None
        self._clock: Callable[[], float] = time.monotonic  # (the loop's, from attach)
        self._rejected_since = 0  # breaker rejections since the latest transition
        self._rejected_epoch = -1  # the breaker epoch whose first rejection was told
        self._limit_told = 0  # the adaptive limit a LimitChanged event last told

    def attach(self, hub: EventHub, clock: Callable[[], float]) -> None:
        """The supervisor started: tell *hub*, on *clock*."""
        self._hub, self._clock = hub, clock

    def publish(self, event_type: type[Event], at: float | None = None, **fields: Any) -> None:
        """Tell the hub what the actor decided; *at* defaults to now."""
        now = self._clock()
        if at is None:
            at = now
        event = event_type(dependency=self._name, at=at, wall=time.time() - (now - at), **fields)
        assert self._hub is not None  # (nothing is decided before start)
        self._hub.publish(event)

    def breaker_rejected(
        self, epoch: int, at: float, reason: str, state: str, retry_after: float
    ) -> None:
        """The breaker in *epoch* turned a call away: told for the epoch's first."""
        self._rejected_since += 1
        if self._rejected_epoch != epoch:
            self._rejected_epoch = epoch
            self.publish(CallRejected, at=at, reason=reason, state=state, retry_after=retry_after)

    def transition(self, transition: Transition) -> None:
        """The breaker moved, with how many calls it rejected since it last did."""
        self.publish(
            BreakerTransition,
            at=transition.at,
            source=transition.source.value,
            target=transition.target.value,
            reason=transition.reason,
            break_duration=transition.break_duration,
            rejected_since_last=self._rejected_since,
        )
        self._rejected_since = 0

    def crashed(self, at: float, crash: BaseException, restarts: int, down: bool) -> None:
        """The actor crashed at *at*, restarted *restarts* times before: *down* if for good."""
        self.publish(ActorCrashed, at=at, error=type(crash).__name__, restarts=restarts, down=down)

    def limit_set(self, limit: int) -> None:
        """A new adaptive limit starts at *limit*: moves are told from there."""
        self._limit_told = limit

    def limit_moved(self, at: float, limit: int, probing: bool) -> None:
        """The adaptive limit moved to *limit*: told when more than a tenth from the last
        told, and not a probe's (its half limit is brief)."""
        told = self._limit_told
        if abs(limit - told) > told / 10 and not probing:
            self._limit_told = limit
            self.publish(LimitChanged, at=at, previous=told, limit=limit)
