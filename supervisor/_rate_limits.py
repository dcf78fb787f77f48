"""
A dependency's rate limits at admission: the turn sources, the price of a call, taking a turn
in each limit (all or none), giving it back, and trueing it up.

A :class:`RateLimits` is a sub-object of the actor, made when the actor starts and again when
``reconfigure(rate_limit=...)`` replaces the limits; it is touched only on the slow path
(admission past the hot path's one comparison), where an attribute hop costs nothing visible.
A call that takes a turn keeps the :class:`RateLimits` it took it from, so a refund goes to the
limiters that charged it, not to ones a reconfigure installed meanwhile.

The turn sources are local GCRA machines (:class:`policies.RateLimiter`) or, with
``Supervisor(shared=...)``, the shared state's leased sources, which have the same interface.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, final

from policies.priority import HIGHEST, LOWEST, reserve_headroom
from policies.rate_limit import RateLimit, RateLimiter, Refusal, reserve_all, reserve_sheddable
from policies.rate_limit import _valid_cost as _valid_cost

from . import _priority
from ._errors import RateLimited

if TYPE_CHECKING:
    from ._ledger import Ledger
    from ._runtime import SharedState

__all__ = ("RateLimits",)

_log: Final = logging.getLogger("ringfence")
_FLOAT_MAX: Final = sys.float_info.max


@final
class RateLimits:
    """The rate limits of dependency *name*, with their turn sources."""

    __slots__ = (
        "_ledger",
        "_local",
        "group",
        "keeps",
        "limiters",
        "limits",
        "name",
        "settles",
        "single",
        "solo",
        "unit_costs",
        "unit_priced",
    )

    def __init__(
        self, name: str, limits: Sequence[RateLimit], shared: SharedState | None, ledger: Ledger
    ) -> None:
        self.name = name
        self._ledger = ledger  # the actor's: a refusal is counted there
        self.limits = tuple(limits)
        #: the turn sources, in order (RateLimiter, or a shared source with its interface)
        self.limiters: list[Any] = [
            limit.machine() if shared is None else shared.limiter(name, i, limit)
            for i, limit in enumerate(self.limits)
        ]
        self._local = all(type(limiter) is RateLimiter for limiter in self.limiters)
        #: some limit trues its turns up with the call's real cost (``settle(result)``)
        self.settles = any(limit.settle is not None for limit in self.limits)
        #: every limit prices a call at 1 (no cost function): ``unit_costs`` is its price list
        self.unit_priced = all(limit.cost is None for limit in self.limits)
        self.unit_costs = [1.0] * len(self.limits)
        #: some local limit keeps a reserve for higher priorities (``RateLimit.reserve``):
        #: every call goes through :meth:`reserve`, which reads the caller's priority
        #: (limits without a reserve never read it: the one-step paths below)
        self.keeps = self._local and any(limit.reserve > 0.0 for limit in self.limits)
        #: the one turn source, when there is one: reserved in one step (see :meth:`reserve`)
        self.single = self.limiters[0] if len(self.limiters) == 1 and not self.keeps else None
        #: the one turn source when it is local and nothing settles: a turn it gives due at
        #: once, taken with a free slot in the same step, is never given back (``final``)
        self.solo = self.single if self._local and not self.settles else None
        #: several local turn sources, nothing settles: ``final`` turns as for ``solo``
        self.group = (
            self.limiters
            if len(self.limiters) > 1 and self._local and not self.settles and not self.keeps
            else None
        )

    def costs(self, args: tuple[object, ...], kwargs: dict[str, Any]) -> list[float]:
        """
        Each limit's price for this call (1 without a cost function), checked.

        Raises:
            TypeError, ValueError: a cost function returned an awaitable or a bad number.
            Exception: a cost function's own error (the caller's bug), unchanged.
        """
        if self.unit_priced:
            return self.unit_costs
        costs: list[float] = []
        i = -1
        for limit in self.limits:
            i += 1
            cost = limit.cost
            if cost is None:
                costs.append(1.0)
                continue
            value = cost(*args, **kwargs)  # its own exception is the caller's: a bug
            if (value.__class__ is float or value.__class__ is int) and 0.0 <= value <= _FLOAT_MAX:
                costs.append(value)
                continue
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # nobody will await it: no "never awaited" warning
                msg = (
                    f"rate_limit[{i}].cost of {self.name!r} returned an awaitable: a cost"
                    " function must be a plain function returning a number"
                )
                raise TypeError(msg)
            costs.append(_valid_cost(f"rate_limit[{i}].cost of {self.name!r}", value))
        return costs

    def reserve(
        self, now: float, costs: list[float], budget: float
    ) -> tuple[float | Refusal, list[float]]:
        """
        A turn in each limit, all or none: the wait until it is due (within *budget*
        seconds and each limit's ``max_wait``) or the refusal, and what each limit was
        charged, to give back exactly that if the call never goes (several local limits
        charge the common start too: ``policies.rate_limit``, rule 2).
        """
        limiters = self.limiters
        if self.keeps and _priority.current() == LOWEST:  # a reserve to leave (sheddable)
            charged: list[float] = []
            return reserve_sheddable(limiters, now, costs, budget, charged), charged
        if len(limiters) == 1:  # a local RateLimiter or a shared source: one step
            return limiters[0].reserve(now, costs[0], budget), costs
        if self._local:
            charged = []
            return reserve_all(limiters, now, costs, budget, charged), charged
        return self._reserve_shared(now, costs, budget), costs

    def _reserve_shared(self, now: float, costs: list[float], budget: float) -> float | Refusal:
        """Shared sources: one at a time, giving back what was taken if a later one refuses.
        They answer only waits they can honour, so the longest wait is the call's."""
        limiters = self.limiters
        wait = 0.0
        turns: list[Any] = []
        for i, (limiter, cost) in enumerate(zip(limiters, costs, strict=True)):
            result = limiter.reserve(now, cost, budget)
            if isinstance(result, Refusal):
                for j in range(i):
                    limiters[j].refund(now, costs[j], turns[j])
                return Refusal(retry_after=result.retry_after, limit=result.limit, index=i)
            turns.append(limiter.last_turn)
            wait = max(wait, result)
        return wait

    def turns(self) -> list[Any]:
        """The turn each limit gave the call just admitted: read before anything else can
        reserve (nothing awaited since), so a give-back names it and a limit never hands
        out a slot promised to a call queued behind it (``policies.rate_limit``, rule 7)."""
        return [limiter.last_turn for limiter in self.limiters]

    @classmethod
    def of(
        cls, name: str, limits: Sequence[RateLimit], shared: SharedState | None, ledger: Ledger
    ) -> RateLimits | None:
        """The rate limits of *name*: local GCRA, or the *shared* state's; None without any."""
        return cls(name, limits, shared, ledger) if limits else None

    def refused(self, retry_after: float, level: int) -> RateLimited:
        """A call of priority *level* refused a turn: counted (the actor's ledger)."""
        self._ledger.rejection("rate_limited", level=level)
        return RateLimited(self.name, retry_after)

    def never_error(self, refusal: Refusal, costs: list[float]) -> ValueError:
        """The error of a call that costs more than a limit's burst: it can never go."""
        cost = costs[refusal.index]
        capacity = refusal.limit.capacity
        msg = (
            f"a call to {self.name!r} costs {cost:g} units, more than rate_limit"
            f"[{refusal.index}]'s burst of {capacity:g}: it can never be admitted"
        )
        return ValueError(msg)

    def refund(self, now: float, charged: list[float], turns: list[Any]) -> None:
        """Give back what a call that never went was charged (see :meth:`reserve`), to the
        turns it was given (:meth:`turns`)."""
        for limiter, cost, turn in zip(self.limiters, charged, turns, strict=True):
            limiter.refund(now, cost, turn)

    def settle(
        self,
        now: float,
        args: tuple[object, ...],
        kwargs: dict[str, Any],
        result: object,
        turns: list[Any],
    ) -> None:
        """
        True the limits up with the call's real cost (``settle(result)``). The estimate is
        priced again (cost functions are meant to be pure). A settle function that raises or
        returns a bad number leaves the estimate standing: the call's result is not lost.
        """
        for i, (limit, limiter) in enumerate(zip(self.limits, self.limiters, strict=True)):
            if limit.settle is None:
                continue
            try:
                estimated = 1 if limit.cost is None else limit.cost(*args, **kwargs)
                actual = limit.settle(result)
                limiter.settle(now, estimated, actual, turns[i])
            except Exception as exc:
                _log.error(
                    "ringfence: rate_limit[%d].settle of %r raised %s; the estimate stands",
                    i,
                    self.name,
                    type(exc).__name__,
                )

    def ready(self, now: float, args: tuple[object, ...], kwargs: dict[str, Any]) -> bool:
        """
        Whether a call of *args* would get a turn in every limit at once (a hedge's test),
        leaving a limit's reserve to higher priorities as :meth:`reserve` does: the caller's
        level (a hedge's task inherits it) decides how much of each burst it may fill
        (``policies.priority.reserve_headroom``).
        """
        try:
            costs = self.unit_costs if self.unit_priced else self.costs(args, kwargs)
        except Exception:  # the cost function's error is the call's to raise, not a hedge's
            return False
        level = _priority.current() if self.keeps else HIGHEST  # (limits without a reserve)
        for left, cost, limit in zip(self.available(now), costs, self.limits, strict=True):
            burst = limit.capacity
            # What the level must leave: 0.0 unless it is the lowest and the limit keeps some.
            kept = burst - reserve_headroom(burst, limit.reserve, level, cost)
            if left - kept < cost:
                return False
        return True

    def available(self, now: float) -> tuple[float, ...]:
        """What each limit has left now (``status().rate_limit``)."""
        return tuple(limiter.available(now) for limiter in self.limiters)
