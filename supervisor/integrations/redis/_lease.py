"""
Turns of a shared rate limit, leased from Redis and admitted locally.

Theory of operation
-------------------
The limit's GCRA state (its theoretical arrival time, ``tat``) lives in Redis and moves only in
``lua/lease.lua``. At each tick the sync actor asks it, for each limit, for a *batch* of units:
"give back these, grant me up to that many". The grant continues the shared schedule: unit
``u`` of a batch is due at ``base + u*T`` (``T = per / rate``), so the first units are due at
once when the bucket has room and the rest follow at the limit's pace, up to a horizon (one
sync interval ahead). What this replica's callers reserve comes out of its batches, here,
without I/O: :meth:`LeasedLimiter.reserve` is :meth:`policies.RateLimiter.reserve` over the
leased units.

Why the aggregate stays within the limit: while Redis answers, every unit admitted anywhere was
granted by the one GCRA in Redis, and a unit is only used once it is due there (the grant's
times are placed on this replica's clock when the answer *arrives*, so never early). Units
given back move the shared schedule back by exactly what was not used. So the replicas together
start at most ``burst + rate * duration / per`` units over a run, the bound of a single limit,
give or take what they hold unused (below).

Why it admits nearly all of it: a replica asks for what its callers asked for lately (admitted
or refused), scaled to the lease's span; one that turned calls away ("hungry") gets its share,
among the hungry replicas, of what accrued since its last lease, plus 20 %, so together they
always ask for more than accrues and nothing is left unused. Leased units nobody used are given
back at the next tick.

The lease's life (``cut`` at each tick, then ``install`` of the answer):

* at a tick, units due more than one interval ahead are given back: the replica keeps what its
  callers may use before the next answer arrives (so a round trip never leaves it without
  turns); units already due that nobody took are given back too. A unit is thus used at most
  one interval after it was due, and what the replicas may spend beyond the limit in any
  window is what they hold unused: a standing lease each (one call, or a quarter of its share
  of an interval's refill on a fast limit), and the units of a replica whose callers suddenly
  stop;
* the answer adds a segment ``[base, granted, used]``; a reservation takes from the segment
  whose next unit is due first (there is one, or two around a tick);
* while Redis cannot be reached the replica admits from a local GCRA at ``rate / replicas``
  (``SyncActor.split``: the last known number of live replicas, at least
  ``expected_replicas``), starting
  *empty*, and behind the leased units it still holds (they are used first): what the shared
  bucket still held belongs to every replica. The next answer ends the fallback;
* before the first answer (``connecting``) the same local share starts *full* (its share of
  the burst): a replica that just started has used nothing, and serves its first calls at once
  instead of refusing them. What it admits meanwhile is charged to the shared limit at its
  first lease, so a replica whose Redis answers promptly adds nothing to the fleet's total;
* back from a fallback, for three intervals, the replica asks for its fallback's pace only and
  Redis grants it units at the limit's pace from an empty bucket (``lua/lease.lua``): all the
  replicas admitted their share meanwhile, and they come back one by one;
* a limit replaced or removed (``reconfigure``) is *retired*: its last cut gives back every
  unit it holds that no caller reserved, and its credit, and asks for nothing. The sync actor
  then forgets it; units reserved from it stay charged (the calls holding them still go).

Ownership: only the event-loop thread touches a limiter, one method at a time: the dependency's
actor (``reserve``, ``settle``, ``refund``, ``available``) and the sync actor (``cut``,
``install``, ``fall_back``, ``unsent``, ``set_replicas``, ``retire``). Nothing here awaits.
"""

from __future__ import annotations

import math
from typing import Final, final

from policies import RateLimit, RateLimiter, Refusal

__all__ = ("LeasedLimiter",)

_INF: Final = math.inf
# Waits at or below this are zero (policies.rate_limit, rule 6); units within it are whole.
_RESOLUTION: Final = 1e-9


def _cost(name: str, value: object) -> float:
    """A finite number >= 0 (never a bool), as ``RateLimiter`` checks it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name!r} must be a number >= 0, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    if not 0.0 <= value < _INF:
        msg = f"{name!r} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)
    return float(value)


@final
class LeasedLimiter:
    """
    One shared rate limit on this replica: ``RateLimiter``'s interface over leased units.

    Args:
        limit: the limit, as registered.
        interval: the sync interval, seconds: the span a lease is meant to cover.
        replicas: live replicas to split the rate by while falling back to local admission.
        now: the loop clock now.
    """

    __slots__ = (
        "_asked",
        "_burst",
        "_credit",
        "_cut_at",
        "_demand",
        "_hungry",
        "_interval",
        "_largest",
        "_local",
        "_max_wait",
        "_recovering",
        "_replicas",
        "_retired",
        "_segments",
        "_split",
        "_sync_interval",
        "config",
        "last_turn",
        "leased",
        "mode",
    )

    def __init__(self, limit: RateLimit, *, interval: float, replicas: int, now: float) -> None:
        self.config = limit
        self._interval = limit.per / limit.rate  # T: seconds per unit
        self._burst = float(limit.capacity)
        self._max_wait = limit.max_wait
        self._sync_interval = interval
        # [base, granted, used]: unit u (0 < u <= granted) is due at base + u*T.
        self._segments: list[list[float]] = []
        self._local: RateLimiter | None = None
        # Until when (loop clock) leases keep to the fallback's pace after a fallback ended.
        self._recovering = -_INF
        self._split = 1  # the replicas the latest fallback split the rate by
        self._replicas = 1
        self._asked = 0.0  # units reserved or refused since the last cut: the demand
        self._demand = 0.0  # units per second, remembered over a few ticks (halved at each)
        self._cut_at = now
        self._largest = 0.0  # the largest single cost asked since the last cut
        self._credit = 0.0  # units given back (> 0) or charged (< 0) outside any segment
        self._hungry = False  # a call was turned away since the last cut
        self._retired = False  # replaced or removed: the next cut gives everything back
        #: ``lease`` (Redis answers), ``local`` (falling back), ``connecting`` (no answer yet)
        self.mode = "connecting"
        #: units leased from Redis so far (for cluster_status and benchmarks)
        self.leased = 0.0
        #: the latest reservation, for a give-back to name (``policies.rate_limit``, rule 7):
        #: ``(segment, its units used after it, cost)``, or ``(None, the fallback's turn)``
        self.last_turn: object = None
        self._fall_back(now, replicas, empty=False)
        self.mode = "connecting"

    # ==========================================================================================
    # The dependency's actor (RateLimiter's interface)

    def reserve(self, now: float, cost: float = 1, max_wait: float = _INF) -> float | Refusal:
        """
        Take a turn for a call of *cost* at *now* (a commitment: the caller waits the returned
        seconds and goes), or refuse and change nothing. As :meth:`policies.RateLimiter.reserve`,
        but only within the turns leased so far (or the local fallback's).
        """
        self._asked += cost
        segments = self._segments
        if len(segments) == 1 and cost > 0:  # the success path of a busy replica: one lease
            segment = segments[0]
            used = segment[2] + cost
            if used <= segment[1] + _RESOLUTION:
                wait = segment[0] + used * self._interval - now
                if wait <= _RESOLUTION:
                    segment[2] = used
                    self.last_turn = (segment, used, cost)
                    return 0.0
                if wait <= max_wait and wait <= self._max_wait:
                    segment[2] = used
                    self.last_turn = (segment, used, cost)
                    return wait
                self._hungry = True
                return Refusal(retry_after=wait, limit=self.config)
        return self._reserve_segments(now, cost, max_wait)

    def _reserve_segments(self, now: float, cost: float, max_wait: float) -> float | Refusal:
        """reserve() with no lease, or several: the segment whose unit is due first."""
        if cost <= 0:
            self.last_turn = None  # nothing taken: nothing to give back
            return 0.0
        best: list[float] | None = None
        best_due = _INF
        interval = self._interval
        for segment in self._segments:
            used = segment[2] + cost
            if used <= segment[1] + _RESOLUTION:
                due = segment[0] + used * interval
                if due < best_due:
                    best, best_due = segment, due
        if best is None:
            return self._reserve_elsewhere(now, cost, max_wait)
        wait = best_due - now
        if wait <= _RESOLUTION:
            wait = 0.0
        elif wait > max_wait or wait > self._max_wait:
            self._hungry = True
            return Refusal(retry_after=wait, limit=self.config)
        best[2] += cost
        self.last_turn = (best, best[2], cost)
        return wait

    def _reserve_elsewhere(self, now: float, cost: float, max_wait: float) -> float | Refusal:
        """No single segment holds *cost*: several together, then the local fallback."""
        self._hungry = True  # unless admitted below
        if cost > self._burst:
            self._largest = max(self._largest, cost)
            return Refusal(retry_after=_INF, limit=self.config)
        left = sum(s[1] - s[2] for s in self._segments)
        if left + _RESOLUTION >= cost > 0.0:
            # Spread over the segments, earliest units first; the call goes when its last
            # unit is due.
            plan: list[tuple[list[float], float]] = []
            due = -_INF
            needed = cost
            for segment in sorted(self._segments, key=lambda s: s[0] + s[2] * self._interval):
                take = min(needed, segment[1] - segment[2])
                if take > 0.0:
                    plan.append((segment, take))
                    due = max(due, segment[0] + (segment[2] + take) * self._interval)
                    needed -= take
            wait = due - now
            if wait <= _RESOLUTION:
                wait = 0.0
            elif wait > max_wait or wait > self._max_wait:
                return Refusal(retry_after=wait, limit=self.config)
            for segment, take in plan:
                segment[2] += take
            self._hungry = False
            self.last_turn = None  # spread over segments: not given back (see refund)
            return wait
        local = self._local
        if local is not None:
            result = local.reserve(now, cost, max_wait)
            if not isinstance(result, Refusal):
                if self.mode == "connecting":
                    self._credit -= cost  # charged at the first lease (see the module's doc)
                self._hungry = False
                self.last_turn = (None, local.last_turn)
                return result
            if not result.never:
                return Refusal(retry_after=result.retry_after, limit=self.config)
            # Above the local share's burst but within the shared one: not "never".
        self._largest = max(self._largest, cost)
        return Refusal(
            retry_after=max(self._sync_interval, cost * self._interval), limit=self.config
        )

    def settle(self, now: float, estimated: float, actual: float, turn: object = None) -> None:
        """
        The call reserved at *estimated* cost *actual*: the difference is charged (or given
        back) to the shared limit at the next tick, or to the local fallback while it admits.

        Raises:
            TypeError, ValueError: a cost is not a finite number ``>= 0``; nothing changed.
        """
        estimated = _cost("estimated", estimated)
        actual = _cost("actual", actual)
        local_turn = _local_turn(turn)
        if self._local is not None and local_turn is not None:
            self._local.settle(now, estimated, actual, local_turn)
        elif actual > estimated:
            self._credit += estimated - actual  # the extra is charged at the next tick
        else:
            self._give_back(turn, estimated - actual)

    def refund(self, now: float, cost: float, turn: object = None) -> None:
        """
        The reservation *turn* (its ``last_turn``) of *cost* was never used: it goes back where
        it came from, so the next caller can have it, but only where no later reservation was
        made on top of it (a unit already promised to a call waiting for it is never handed
        out again: ``policies.rate_limit``, rule 7). Otherwise, and without a *turn*, nothing
        is given back: the lease runs out within an interval anyway.

        Raises:
            TypeError, ValueError: *cost* is not a finite number ``>= 0``; nothing changed.
        """
        cost = _cost("cost", cost)
        local_turn = _local_turn(turn)
        if local_turn is not None:
            if self._local is not None:
                self._local.refund(now, cost, local_turn)
            return
        self._give_back(turn, cost)

    def _give_back(self, turn: object, units: float) -> None:
        """*units* of the segment reservation *turn*, if it is still the segment's latest."""
        if not (isinstance(turn, tuple) and len(turn) == 3):
            return
        segment, end, cost = turn
        if segment[2] == end and units <= cost and any(s is segment for s in self._segments):
            segment[2] = end - units

    def available(self, now: float) -> float:
        """Units a call could take at *now* without waiting (for ``status().rate_limit``)."""
        due = 0.0
        for base, granted, used in self._segments:
            due += max(0.0, min(granted, (now - base) / self._interval) - used)
        if self._local is not None:
            due += self._local.available(now)
        return due

    # ==========================================================================================
    # The sync actor

    def cut(self, now: float) -> tuple[float, float, float, bool]:
        """
        Before a tick is sent: keep the units callers may use until the next answer (due
        within one interval), give the rest back. Returns ``(given back, wanted, hungry,
        recovering)``: the units to return to the shared schedule (negative: units to
        charge), the units to ask for, from the demand since the previous cut, when calls
        were turned away meanwhile the largest of them (units; 0.0: none was), and whether
        this replica is back from a fallback since less than three intervals: it then asks
        for its fallback's pace only, and the script grants units at the limit's pace from an
        empty bucket (``lua/lease.lua`` says why).
        """
        if self._retired:
            return self._last_cut(now), 0.0, 0.0, False
        interval = self._interval
        keep_until = now + self._sync_interval
        given = self._credit
        self._credit = 0.0
        kept: list[list[float]] = []
        for segment in self._segments:
            base, granted, used = segment
            # Units already due that nobody took are given back: held on, they would let this
            # replica spend them later on top of what the shared bucket refills meanwhile.
            # Consumption is in order, so they are the next ones: skip them.
            stale = (now - base) / interval
            if used < stale:
                skipped = min(stale, granted) - used
                given += skipped
                used += skipped
            keep = min(granted, max(used, (keep_until - base) / interval))
            given += granted - keep
            if keep - used > _RESOLUTION:
                segment[1], segment[2] = keep, used
                kept.append(segment)
            else:
                given += keep - used  # at most a rounding error; negative if overdrawn
        self._segments = kept
        hungry = max(self._largest, 1e-9) if self._hungry else 0.0
        self._hungry = False
        held = sum(s[1] - s[2] for s in kept)
        elapsed, self._cut_at = now - self._cut_at, now
        want = max(0.0, self._want(elapsed) - held)
        recovering = self.mode == "local" or now < self._recovering
        if recovering:
            # Back from a fallback: the other replicas may not be back yet (each reconnects
            # after its own backoff, up to two intervals), their charges have not reached
            # Redis, and the shared bucket looks fuller than it is. Keep to the fallback's
            # pace meanwhile, rather than take a burst that everyone would then pay for.
            # (Split as the fallback was: the heartbeats of replicas not back yet have expired.)
            split = max(self._replicas, self._split)
            share = self.config.rate / self.config.per / split
            want = min(want, share * self._sync_interval)
        return given, want, hungry, recovering

    def retire(self) -> None:
        """
        This limit was replaced or removed (``reconfigure``): from now on :meth:`cut` gives
        back everything it holds and asks for nothing (the sync actor sends that cut once, and
        again if its tick fails, then forgets the limiter). Units already reserved stay
        charged: the calls holding them still go.
        """
        self._retired = True

    @property
    def retired(self) -> bool:
        """Whether :meth:`retire` was called."""
        return self._retired

    def _last_cut(self, now: float) -> float:
        """A retired limiter's cut: every unit no caller reserved, and the credit, go back."""
        given = self._credit
        self._credit = 0.0
        for _base, granted, used in self._segments:
            given += granted - used
        self._segments = []
        self._asked = self._largest = 0.0
        self._hungry = False
        self._cut_at = now
        return given

    def _want(self, elapsed: float) -> float:
        """
        Units to hold: the recent demand over the lease's span, and at least a standing lease
        so an idle replica's next calls need not wait for a tick: one call (the largest seen),
        or a quarter of its share of an interval's refill when that is more (a fast limit).
        Not more: units held unused are what the replicas together may spend beyond the
        limit, on top of what the shared bucket refills meanwhile (so at most a quarter of an
        interval's refill in all). And never more than its share of an interval's refill,
        so idle replicas do not hold a slow limit's few units away from a busy one.
        """
        rate = self.config.rate / self.config.per
        # Calls come in bursts: remember a burst for a few ticks rather than lease for the
        # quiet tick that followed it.
        self._demand = max(self._asked / max(elapsed, self._sync_interval / 4), self._demand / 2)
        demand = self._demand * 2.0 * self._sync_interval
        share = rate * self._sync_interval / self._replicas
        standing = min(max(1.0, self._largest, share / 4), share)
        self._asked = 0.0
        largest, self._largest = self._largest, 0.0
        return max(demand, standing, min(largest, self._burst))

    def install(self, now: float, granted: float, base: float) -> None:
        """The answer: *granted* units, unit ``u`` due at ``base + u*T`` (loop clock)."""
        if self.mode == "local":  # back from a fallback (not from the start: "connecting")
            self._recovering = now + 3.0 * self._sync_interval
        self.mode = "lease"
        self._local = None
        if granted > _RESOLUTION:
            self._segments.append([base, granted, 0.0])
            self.leased += granted

    def fall_back(self, now: float, replicas: int) -> None:
        """
        Redis cannot be asked: admit from a local GCRA at ``rate / replicas`` (and burst /
        replicas, at least 1) from now on, starting empty. Leased units still due come first.
        """
        self._fall_back(now, replicas, empty=True)

    def _fall_back(self, now: float, replicas: int, *, empty: bool) -> None:
        replicas = max(1, replicas)
        self._replicas = self._split = replicas
        if self._local is not None and self._local.config.rate * replicas == self.config.rate:
            self.mode = "local"
            return
        limit = self.config
        share = RateLimit(
            limit.rate / replicas,
            per=limit.per,
            burst=max(1.0, limit.capacity / replicas),
            max_wait=limit.max_wait,
        )
        local = share.machine()
        if empty:
            local.reserve(now, share.capacity)  # the shared bucket's burst is not ours
        # And behind the leased units still held: they are used first, at the shared pace.
        held = sum(s[1] - s[2] for s in self._segments)
        if held > 0:
            local.settle(now, 0.0, held)
        self._local = local
        self.mode = "local"

    def unsent(self, given: float) -> None:
        """The tick that carried *given* (from :meth:`cut`) failed: give it back next time."""
        self._credit += given

    def set_replicas(self, replicas: int) -> None:
        """The live replicas, as the last answer counted them (what a fallback splits by)."""
        self._replicas = max(1, replicas)


def _local_turn(turn: object) -> int | None:
    """The local fallback's turn a reservation was given (``(None, turn)``), else None."""
    if isinstance(turn, tuple) and len(turn) == 2 and isinstance(turn[1], int):
        return turn[1]
    return None
