"""
A hedged dependency's hedges (``policies.Hedge``, issue 19): the policy, the delay a hedge
waits for (learnt from the dependency's latencies), and a started or winning hedge counted
and told. The race itself is ``_call.py``'s; whether a hedge may start now is the actor's as far as
its own state goes (``Actor.hedged``: breaker, gates, slots), then this object's (a free
rate-limit turn now, a retry of the budget: :meth:`Hedging.start`).

Owned by the actor (``Actor.hedging``, ``None`` when the dependency is not hedged): a
reconfigure's new hedge gets a new one, and a call keeps the one it started with. Nothing
else writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from ._events import HedgeStarted

if TYPE_CHECKING:
    from policies import Hedge, LatencyWindow
    from policies.budget import RetryBudget

    from ._ledger import Ledger
    from ._rate_limits import RateLimits

__all__ = ("Hedging",)


@final
class Hedging:
    """One dependency's hedging under one :class:`~policies.Hedge`."""

    __slots__ = ("_delay", "_latency", "_ledger", "_publish", "policy")

    def __init__(
        self,
        policy: Hedge,
        latency: LatencyWindow,
        ledger: Ledger,
        publish: Callable[..., None],
    ) -> None:
        self.policy = policy
        self._delay = policy.machine()  # (its cache of the latencies' percentile)
        self._latency = latency  # the actor's window, read only
        self._ledger, self._publish = ledger, publish

    def delay(self) -> float:
        """Seconds a hedged call's attempt may run before a hedge starts, from the latencies."""
        return self._delay.delay(self._latency)

    def start(
        self,
        now: float,
        attempt: int,
        hedge: int,
        delay: float,
        limits: RateLimits | None,
        budget: RetryBudget | None,
        args: tuple[object, ...],
        kwargs: dict[str, Any],
    ) -> bool:
        """
        Whether hedge number *hedge* of attempt *attempt* starts now, the actor having found
        its breaker closed, no gate down and a slot free (``Actor.hedged``): a turn of the
        rate *limits* must be free now (a hedge never waits), above any reserve the call's
        priority must leave (``RateLimits.ready`` reads it: the hedge runs in the caller's
        context, in a task of the call's race), and it spends a retry of the *budget* (none
        left: no hedge). Counted and told when yes.
        """
        if limits is not None and not limits.ready(now, args, kwargs):
            return False
        if budget is not None and not budget.try_retry(now):
            return False
        self._ledger.hedge()
        self._publish(HedgeStarted, at=now, attempt=attempt, hedge=hedge, delay=delay)
        return True

    def won(self) -> None:
        """A hedge, not the attempt it raced, answered the call."""
        self._ledger.hedge_won()

    def absorbed(self, failures: int, successes: int) -> None:
        """
        A race ended with *failures* contenders failed (or cut off) and *successes* answered
        late whose outcomes were not the call's: counted attempts, but no request, success
        or error raised of their own (``status().requests``).
        """
        self._ledger.absorbed(failures, successes)
