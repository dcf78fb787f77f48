"""
Rate and token limits: configuration (:class:`RateLimit`) and a GCRA machine (:class:`RateLimiter`).

Theory of operation
-------------------
The machine is the Generic Cell Rate Algorithm in its *virtual scheduling* form (ITU-T
Recommendation I.371, annex A; explained for web APIs in Brandur Leach's "Rate Limiting, Cells,
and GCRA", brandur.org/rate-limiting, and implemented by his redis-cell, ``src/cell/mod.rs``).
One number of state, the *theoretical arrival time* ``tat``, replaces a bucket's counter and
refill timer. With ``T = per / rate`` (the emission interval: seconds per unit of cost) and a
bucket of ``burst`` units, a call of cost ``n`` arriving at ``now`` conforms at the earliest
time ``s >= now`` with::

    max(tat, s) + n*T - s <= burst*T          # redis-cell: allow_at = new_tat - tolerance

and then ``tat = max(tat, s) + n*T``. Solving for ``s`` gives the wait::

    wait = max(0, max(tat, now) + n*T - burst*T - now)

redis-cell's tolerance is ``T * (max_burst + 1)`` with ``limit = max_burst + 1``; our ``burst``
is that limit, so the two agree (``test_redis_cell_table`` replays its test table). The ITU
form, one cell at a time, is the case ``n = 1`` with ``tau = (burst - 1) * T``.

We store ``tat`` as ``(t0, level)``: ``tat = t0 + level*T``, ``level`` being the cost still
"in the bucket" at ``t0`` (above ``burst`` when reservations wait in line). It is the same
state, but calls at the same instant add whole costs exactly, so ten calls of cost 1 against a
burst of 10 leave a level of exactly 10 instead of ``now + 10*T`` rounded ten times.

Rules this file keeps:

1. *A reservation is a commitment* (FIFO). :meth:`RateLimiter.reserve` either refuses or
   *takes* the turn at once and returns how long to wait before using it. A later call lines
   up behind every earlier reservation, so for a clock that does not go backwards turns are
   granted in the order reserved. A large call (cost up to ``burst``) gets a place in line
   immediately and cannot be starved by a stream of small ones; the price is that it delays
   the small calls after it. The runtime only has to sleep the returned wait.
2. *Several limits, one decision.* :func:`reserve_all` admits a call only when every limit
   (requests per minute *and* tokens per minute, say) admits it; a refusal leaves every
   limiter untouched. The call goes at the latest of the waits and each limit is charged for
   that common start time, so no limit sees more than its rate, however late another made
   the call.
3. *Never is not a wait.* A cost above ``burst`` can never conform: the answer is a
   :class:`Refusal` with ``retry_after == inf`` (``never``), at once, rather than a wait forever.
4. *The guarantee.* For any sequence of reservations, refunds and settles (at any ``now``
   values, backwards included), let ``s = now + wait`` for each admitted call that was not
   refunded, and count the units it reserved and used (its cost, or ``actual`` when
   :meth:`~RateLimiter.settle` says it used less). The calls with ``s`` in any closed interval
   of length ``L`` add up to at most ``burst + rate * L / per`` (so ``rate + burst`` over any
   ``per`` seconds). Proof: an admission's charge occupies a *slice* of the schedule,
   ``[max(tat, now), new tat)``, and the units the call uses lie within ``[s, s + burst*T]``
   (the wait is what makes the slice end by ``s + burst*T``; ``reserve_all`` starts each
   limit's units at ``s`` at the earliest, rule 2). Slices never overlap, because ``tat`` moves
   back only over units nobody holds (rule 7). So the calls starting within ``[a, a + L]`` use
   disjoint pieces of ``[a, a + L + burst*T]``: at most ``L/T + burst`` units. Usage *beyond*
   the estimate cannot be refused after the fact: settle charges it on top of the schedule, in
   a slice of its own, and later calls wait for it.
5. *Clocks going backwards break nothing:* ``max(tat, now)`` keeps the schedule, the wait is
   measured from the ``now`` given, and the guarantee above holds for any order of ``now``.
6. *Waits shorter than a nanosecond are zero.* ``T = per / rate`` is rarely exact in binary, and
   a turn due now must not become a wait of 1e-16 s (a refusal under ``max_wait=0``).
   redis-cell keeps time in whole nanoseconds for the same reason. A call may thus start up
   to a nanosecond before its slice (never earlier: the schedule itself is exact), so rule 4
   holds with ``L + 1e-9`` for ``L``: invisible, except for a limit of more than a unit per
   nanosecond (bytes at 10 GB/s), whose window may hold a nanosecond's units more.
7. *What was promised is never handed out again.* A call waiting in line keeps the start
   time it was promised, whatever becomes of the turns before it. So a turn given back from
   the middle of the line must not move ``tat`` back: the next call would get the last turn's
   slot a second time (issue 16, item 3: with ``RateLimit(10, burst=1)``, five calls at 0
   start at 0, .1, .2, .3 and .4; the second, cancelled at .05, gave its unit back, and the
   next call started at .4, with the fifth). Each admission is therefore a numbered *turn*
   (:attr:`RateLimiter.last_turn`, read right after it; numbers are unique across limiters),
   and :meth:`~RateLimiter.refund` and :meth:`~RateLimiter.settle` give units back *to the
   turn they name*. The machine keeps the
   turns at the end of the schedule, oldest first, as ``[turn, charge, units given back]``.
   Units given back are free inside their turn's slice, and ``tat`` moves back over the top
   of that stack only, as far as its units are free. A turn given back at the end of the line
   moves ``tat`` back at once; one from the middle leaves a hole, reached when every turn
   above it has been given back too (waiters cancelled together give everything back, in any
   order), and lost otherwise. That is the simplest rule that keeps rule 4's proof: ``tat``
   moves back over free units only. Giving back nothing is always safe, so a refund or settle
   naming no turn, or a turn no longer held, gives nothing back. Turns are forgotten when the
   schedule has run past them (``tat <= now``: nothing left to give back), and beyond the
   latest :data:`_HELD` of them (memory stays bounded while a busy limit never empties).
   Charges need no turn: they go on top.
8. *Every number stays a number.* :class:`RateLimit` refuses limits whose ``T``, ``1/T`` or
   ``burst * T`` is not a finite number ``> 0`` (``RateLimit(1e-300, per=1e300)``: ``T`` is
   ``inf``, and ``(now - t0) / T`` was ``NaN``, a level that admitted every call; issue 16,
   item 3, defect 9). Past that, only a queue of absurd sizes can leave floats behind: a wait
   that would be ``inf`` is refused with ``retry_after`` the largest float (not ``never``:
   the cost fits the burst), a common start that would charge a level of ``inf`` likewise,
   and a settle charge that would is saturated (forgetting the turns held below it).
9. *A turn nobody gives back needs no record.* ``reserve(..., final=True)`` is the caller's
   promise that a turn due at once is used at once and never named by a refund or a settle
   (the runtime's case: one local limit, nothing to settle, a free slot taken in the same
   step). Such a turn gets no number (:attr:`~RateLimiter.last_turn` is 0, which names no
   turn) and no record. It holds its units at the top of the schedule until the schedule
   runs past them, so by rule 7 ``tat`` can never move back below it: the turns held below
   it could give nothing back any more, and are forgotten at once (a turn of cost 0 holds
   nothing and forgets nothing). Everything observable, the waits, the refusals,
   :meth:`~RateLimiter.available` and what any later give-back gives back, is what the same
   turn taken without ``final`` and never given back would leave; only the bookkeeping is
   saved (a number and a record a turn: the success path of most rate-limited calls). A turn
   that must be waited for is numbered and held as usual: its wait may be cancelled.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias, TypeVar, final

import attrs

from ._validators import check_derived, number, optional_number, seconds
from .priority import LOWEST, reserve_headroom

__all__ = (
    "CostFunction",
    "RateLimit",
    "RateLimiter",
    "Refusal",
    "SettleFunction",
    "reserve_all",
    "reserve_sheddable",
)

_T = TypeVar("_T")

# A user's cost function takes the call's own arguments, whatever they are; `...` is the
# honest parameter list, and the only explicit Any in policies/.
CostFunction: TypeAlias = Callable[..., float]  # type: ignore[explicit-any]
#: ``settle(result) -> float``: the real cost of a call, known from its result.
SettleFunction: TypeAlias = Callable[..., float]  # type: ignore[explicit-any]

_INF: Final = math.inf
_FLOAT_MAX: Final = sys.float_info.max
# Waits at or below this many seconds are returned as 0.0 (rule 6).
_RESOLUTION: Final = 1e-9
#: The most turns a limiter remembers for give-backs (rule 7); older ones are given up.
_HELD: Final = 1024
# A held turn: [turn, charge, given back], units (the turn number is a whole float).
_Held: TypeAlias = list[float]
# Turn numbers, unique across limiters: a turn named to a limiter that did not give it (one
# replaced by a reconfigure, say) is never held there, so it gives nothing back (rule 7).
_TURNS: Final = itertools.count(1)


def _check_callable(what: str) -> Callable[[object, attrs.Attribute[_T], _T], None]:
    def check(_inst: object, attribute: attrs.Attribute[_T], value: _T) -> None:
        if value is not None and not callable(value):
            msg = (
                f"{attribute.name!r} must be None or a callable {what},"
                f" got {value!r} of type {type(value).__name__}"
            )
            raise TypeError(msg)

    return check


def _valid_cost(name: str, value: object) -> float:
    """A cost the machine can count: a finite ``int`` or ``float`` ``>= 0`` (never ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name!r} must be a number >= 0, got {value!r} of type {type(value).__name__}"
        raise TypeError(msg)
    if not 0.0 <= value <= _FLOAT_MAX:  # NaN fails both comparisons; huge ints fail the second
        msg = f"{name!r} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)
    return value


@final
@attrs.frozen
class RateLimit:
    """
    A request or token limit for one dependency: ``rate`` units of cost per ``per`` seconds.

    ``RateLimit(500, per=60)`` allows 500 requests a minute; with
    ``cost=lambda prompt: len(prompt) / 4`` the same class limits tokens a minute. ``rate`` is
    the one positional argument (it reads as "500 per 60 s"); the rest are keyword-only, so
    ``RateLimit(500, 60)`` cannot silently mean a burst.

    Args:
        rate: units of cost allowed per ``per`` seconds, a finite number ``> 0``.
        per: the period in seconds (or a ``timedelta``), finite ``> 0``. Default 1.0.
        burst: units that may go at once from a full bucket, ``>= 1``. ``None`` (the default)
            means ``max(rate, 1)``: a full period's quota at once, which is how providers'
            per-minute limits behave (their buckets refill continuously up to the full
            quota). Set it lower to spread calls out.
        max_wait: the longest a call waits for a turn in this limit, seconds (or a
            ``timedelta``), ``>= 0``; ``inf`` waits as long as the call's deadline allows.
            Default 0.0: a call that cannot go at once is refused (``RateLimited``).
        cost: ``cost(*args, **kwargs) -> float``, the price of one call in units (estimated
            tokens, say); ``None`` means every call costs 1.
        settle: ``settle(result) -> float``, the call's real cost once its result is known;
            the difference from ``cost`` is charged or refunded (``None``: keep the estimate).
        reserve: the share of ``burst`` kept for calls above the lowest priority, from 0
            (the default: none) to below 1. A call of ``Priority.SHEDDABLE``
            (``supervisor.priority``) never takes the last ``reserve * burst`` units: it
            waits (within ``max_wait``) or is refused until it leaves them; a call that
            costs more than what is left above the reserve goes only from an otherwise empty
            bucket. Kept by local limits: a supervisor with ``shared=`` state refuses one.

    Over any ``per`` seconds at most ``rate + burst`` units start (``burst + rate * L / per``
    over any ``L`` seconds): a full bucket plus what refills meanwhile.

    Raises:
        TypeError, ValueError: an argument has the wrong type or is out of range, or the
            numbers the limit is counted in are not finite and positive: ``per / rate``
            (seconds per unit), ``rate / per`` (units per second) and ``burst * per / rate``
            (seconds to refill a full bucket). ``RateLimit(1e-300, per=1e300)`` is one second
            per ``1e600`` units: ``inf`` in floats.
    """

    rate: float = attrs.field(validator=number(gt=0))
    per: float = attrs.field(default=1.0, kw_only=True, converter=seconds, validator=number(gt=0))
    burst: float | None = attrs.field(default=None, kw_only=True, validator=optional_number(ge=1))
    max_wait: float = attrs.field(
        default=0.0, kw_only=True, converter=seconds, validator=number(ge=0, allow_inf=True)
    )
    cost: CostFunction | None = attrs.field(
        default=None, kw_only=True, validator=_check_callable("(*args, **kwargs) -> float")
    )
    settle: SettleFunction | None = attrs.field(
        default=None, kw_only=True, validator=_check_callable("(result) -> float")
    )
    reserve: float = attrs.field(default=0.0, kw_only=True, validator=number(ge=0, le=1))

    def __attrs_post_init__(self) -> None:
        # The machine's own arithmetic (RateLimiter.__init__), checked once here: a T of inf
        # or 0 made every level NaN, and a NaN level admits every call (issue 16, item 3,
        # defect 9). A burst whose refill time overflows would turn waits into inf.
        if self.reserve == 1:
            msg = (
                "'reserve' must be below 1 (a share of the burst kept for higher priorities),"
                f" got {self.reserve!r}: all of it would leave sheddable calls nothing"
            )
            raise ValueError(msg)
        rate, per = self.rate, self.per
        check_derived(
            "'per' / 'rate' (seconds per unit of cost)", per / rate, f"{per!r} / {rate!r}"
        )
        check_derived(
            "'rate' / 'per' (units of cost per second)", rate / per, f"{rate!r} / {per!r}"
        )
        if self.burst is not None:  # max(rate, 1) * per / rate is per, or per / rate
            check_derived(
                "'burst' * 'per' / 'rate' (seconds to refill a full bucket)",
                self.burst * (per / rate),
                f"{self.burst!r} * {per!r} / {rate!r}",
            )

    @property
    def capacity(self) -> float:
        """The burst in effect: ``burst``, or ``max(rate, 1)`` when it was left ``None``."""
        return self.burst if self.burst is not None else max(self.rate, 1.0)

    def machine(self) -> RateLimiter:
        """A fresh :class:`RateLimiter` for this limit, with a full bucket."""
        return RateLimiter(self)


@final
@attrs.frozen(kw_only=True)
class Refusal:
    """
    A call that may not go: :meth:`RateLimiter.reserve` and :func:`reserve_all` return it.

    Attributes:
        retry_after: seconds from ``now`` until the same call would be admitted without
            waiting, as things stand; ``inf`` when it never can (its cost exceeds the burst).
        limit: the limit that refused.
        index: the limit's position in the sequence given to :func:`reserve_all` (0 for
            :meth:`RateLimiter.reserve`).
    """

    retry_after: float
    limit: RateLimit
    index: int = 0

    @property
    def never(self) -> bool:
        """The cost exceeds the limit's burst: no wait will ever admit this call."""
        return self.retry_after == _INF


@final
class RateLimiter:
    """
    The GCRA state of one limit. Not thread-safe and not meant to be: exactly one owner (the
    dependency's actor) calls it, one method at a time. Create it with :meth:`RateLimit.machine`.

    All times are seconds from one clock (any origin); all costs are units of the limit.
    """

    __slots__ = ("_burst", "_drain", "_held", "_interval", "_level", "_t0", "config", "last_turn")

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        self._burst = float(config.capacity)
        self._interval = config.per / config.rate  # T: seconds per unit
        self._drain = config.rate / config.per  # 1/T: units per second
        # tat = t0 + level*T (see the module docstring). t0 = -inf: a full bucket at any now.
        self._t0 = -_INF
        self._level = 0.0
        # The latest turn's number (rule 7); 0: none yet.
        #: the turn the latest reservation (or settle charge) took: a give-back names it
        self.last_turn = 0
        # The turns at the end of the schedule, oldest first, for give-backs (rule 7).
        self._held: deque[_Held] = deque(maxlen=_HELD)

    def _level_at(self, now: float) -> float:
        # (max(tat, now) - now) / T: the cost in the bucket as seen from `now`. For now < t0
        # (a clock gone backwards) the level is higher, never lower: the schedule holds.
        level = self._level - (now - self._t0) * self._drain
        return level if level > 0.0 else 0.0

    def peek(self, now: float, cost: float = 1) -> float:
        """
        Seconds a call of *cost* would wait if reserved at *now*; nothing is taken.

        Returns:
            The wait (0.0: at once), or ``inf`` when *cost* exceeds the burst.

        Raises:
            TypeError, ValueError: *cost* is not a finite number ``>= 0``.
        """
        cost = _valid_cost("cost", cost)
        if cost > self._burst:
            return _INF
        excess = self._level_at(now) + cost - self._burst
        wait = excess * self._interval
        return wait if wait > _RESOLUTION else 0.0

    def reserve(
        self, now: float, cost: float = 1, max_wait: float = _INF, final: bool = False
    ) -> float | Refusal:
        """
        Take a turn for a call of *cost* at *now*, or refuse it and change nothing.

        Args:
            now: the current time, seconds.
            cost: the call's price in units (1 for a request limit).
            max_wait: the caller's own bound on the wait (its remaining deadline, say); the
                limit's ``max_wait`` applies as well, the smaller one wins.
            final: the caller's promise that a turn due at once (a wait of 0.0) is used at
                once and never given back: no refund or settle will name it. Such a turn is
                not numbered (:attr:`last_turn` is 0) and not held (rule 9). A turn that
                must be waited for is numbered and held as usual: the wait may be cancelled.

        Returns:
            The seconds to wait before the call may start (0.0: at once); the turn is taken,
            and :attr:`last_turn` names it. Or a :class:`Refusal` when the wait would exceed
            either bound (``retry_after`` is that wait), or when *cost* exceeds the burst
            (``never``).

        Raises:
            TypeError, ValueError: *cost* is not a finite number ``>= 0``; nothing changed.
        """
        # Fast path for the common types; _valid_cost gives the exact error otherwise.
        if (cost.__class__ is not float and cost.__class__ is not int) or not (
            0.0 <= cost <= _FLOAT_MAX
        ):
            cost = _valid_cost("cost", cost)
        level = self._level - (now - self._t0) * self._drain
        if level <= 0.0:
            level = 0.0
            if self._held:  # the schedule ran past every held turn: nothing to give back
                self._held.clear()
        level += cost
        excess = level - self._burst
        wait = 0.0
        if excess > 0.0:
            if cost > self._burst:
                return Refusal(retry_after=_INF, limit=self.config)
            wait = excess * self._interval
            if wait <= _RESOLUTION:
                wait = 0.0
            elif not (wait <= max_wait and wait <= self.config.max_wait and wait < _INF):
                # Past a bound, or beyond any float (a queue of absurd bursts, rule 8).
                return Refusal(retry_after=wait if wait < _INF else _FLOAT_MAX, limit=self.config)
        # tat = max(tat, now) + cost*T, stored relative to now (rule 1: the turn is taken).
        self._t0 = now
        self._level = level
        if final and wait == 0.0:
            # A turn nobody will give back (rule 9): no number, no record; and with units,
            # it stops the schedule moving back over anything held below it, for good.
            self.last_turn = 0
            if cost > 0.0 and self._held:
                self._held.clear()
            return wait
        self.last_turn = turn = next(_TURNS)
        if cost > 0.0:
            self._held.append([turn, cost, 0.0])
        return wait

    def settle(self, now: float, estimated: float, actual: float, turn: int | None = None) -> None:
        """
        True up the call that took *turn* at cost *estimated* and really cost *actual*.

        ``actual - estimated`` is charged at the end of the schedule (later calls wait for
        it). When negative, that many units are given back to *turn* (rule 7): the schedule
        moves back only over units no later turn holds, and never below an empty bucket, so
        :meth:`available` never exceeds the burst. Without *turn*, or for a turn no longer
        held, nothing is given back.

        Raises:
            TypeError, ValueError: a cost is not a finite number ``>= 0``, or *turn* is not
                ``None`` or an int; nothing changed.
        """
        estimated = _valid_cost("estimated", estimated)
        actual = _valid_cost("actual", actual)
        _valid_turn(turn)
        extra = actual - estimated
        if extra > 0.0:
            level = self._level - (now - self._t0) * self._drain
            if level <= 0.0:
                level = 0.0
                self._held.clear()
            level += extra
            if level > _FLOAT_MAX:  # more than a float counts (rule 8): saturate, and
                level = _FLOAT_MAX  # give nothing back that was held below
                self._held.clear()
            self._t0 = now
            self._level = level
            # A slice of its own on top, held by nobody: never given back.
            self.last_turn = next(_TURNS)
            self._held.append([self.last_turn, extra, 0.0])
        elif extra < 0.0 and turn is not None:
            self._give_back(now, turn, -extra)

    def refund(self, now: float, cost: float, turn: int | None = None) -> None:
        """
        Give back *cost* units of *turn*, a turn reserved but never used (the caller was
        cancelled while waiting, or the bulkhead refused it): the units no later turn holds
        go back to the schedule (rule 7). Without *turn*, or for a turn no longer held,
        nothing is given back: which turn it was decides whether that is safe.

        Raises:
            TypeError, ValueError: *cost* is not a finite number ``>= 0``, or *turn* is not
                ``None`` or an int; nothing changed.
        """
        cost = _valid_cost("cost", cost)
        _valid_turn(turn)
        if turn is not None:
            self._give_back(now, turn, cost)

    def _give_back(self, now: float, turn: int, units: float) -> None:
        """Mark *units* of *turn* free; move ``tat`` back over the free top of the stack."""
        held = self._held
        top = len(held) - 1
        i = top
        while i >= 0:  # from the end: give-backs are mostly of recent turns
            number = held[i][0]
            if number == turn:
                break
            if number < turn:
                return  # not held (never, or no longer): nothing to give back
            i -= 1
        else:
            return
        record = held[i]
        record[2] = min(record[1], record[2] + units)
        if i != top:
            return  # a hole below turns still held: reached when they are given back
        level = self._level
        while held:
            record = held[-1]
            if record[2] < record[1]:  # partly free: tat moves back over its free part
                level -= record[2]
                record[1] -= record[2]
                record[2] = 0.0
                break
            level -= record[1]
            held.pop()
        if level - (now - self._t0) * self._drain <= 0.0:
            # Back to an empty bucket, no further: every held turn is in the past.
            self._t0 = now
            self._level = 0.0
            held.clear()
        else:
            self._level = level

    def available(self, now: float) -> float:
        """Units a call could take at *now* without waiting, from 0 to the burst (for status)."""
        left = self._burst - self._level_at(now)
        return left if left > 0.0 else 0.0


def _valid_turn(turn: object) -> None:
    """``None`` or an ``int`` (never ``bool``): a turn number, as :attr:`last_turn` gives it."""
    if turn is not None and (isinstance(turn, bool) or not isinstance(turn, int)):
        msg = (
            "'turn' must be None or an int (a RateLimiter.last_turn),"
            f" got {turn!r} of type {type(turn).__name__}"
        )
        raise TypeError(msg)


def reserve_all(
    limiters: Sequence[RateLimiter],
    now: float,
    costs: Sequence[float],
    max_wait: float = _INF,
    charged: list[float] | None = None,
    final: bool = False,
) -> float | Refusal:
    """
    Take a turn in every limiter for one call, or in none (rule 2 of the module docstring).

    Each limiter prices the call with its own cost (``costs[i]`` for ``limiters[i]``: 1 for a
    request limit, estimated tokens for a token limit). The call may start after the longest
    of the limiters' waits; every limiter is then charged as of that common start.

    Args:
        limiters: distinct limiters of one dependency (the same one twice is counted once
            per entry, against a state read only once: do not).
        now: the current time, seconds.
        costs: one cost per limiter.
        max_wait: the caller's bound on the common wait (its remaining deadline, say). Each
            limiter's own ``max_wait`` bounds that limiter's wait.
        charged: a list to receive, on admission, what each limiter was charged: its cost,
            plus the wait a slower limiter imposed on a limiter that had room (rule 2). A
            call that never goes gives back exactly that, naming the turn each limiter gave
            it (``refund(now, charged[i], turns[i])``, ``turns[i]`` being
            ``limiters[i].last_turn`` read right after the admission).
        final: as for :meth:`RateLimiter.reserve` (rule 9), for every limiter: turns due at
            once (a common wait of 0.0) are used at once and never given back.

    Returns:
        The seconds to wait (0.0: at once); every turn is taken (each limiter's
        :attr:`~RateLimiter.last_turn` names its own). Or the :class:`Refusal` of
        the first limiter that refused, with ``retry_after`` = the longest wait, and no turn
        taken anywhere. A cost above its limiter's burst refuses with ``never``, before any
        wait is considered.

    Raises:
        TypeError, ValueError: a cost is not a finite number ``>= 0``, or the two sequences
            differ in length; nothing changed.
    """
    count = len(limiters)
    if count != len(costs):
        msg = (
            f"reserve_all() needs one cost per limiter, got {count} limiters and {len(costs)} costs"
        )
        raise ValueError(msg)
    if count == 1:
        result = limiters[0].reserve(now, costs[0], max_wait, final)  # the same rules
        if charged is not None and not isinstance(result, Refusal):
            charged.append(costs[0])
        return result
    # Read every limiter first, change none: a refusal or a bad cost leaves all as they were.
    # (Written out rather than calling peek(): this runs once per call of a rate-limited
    # dependency, and the inlined loop is several times cheaper.)
    levels: list[float] = []
    wait = 0.0
    fastest = heaviest = 0.0  # the largest drain and level + cost: rule 8's check
    never = refused = slowest = -1
    i = -1
    for limiter, cost in zip(limiters, costs):  # noqa: B905 (lengths checked above)
        i += 1
        if (cost.__class__ is not float and cost.__class__ is not int) or not (
            0.0 <= cost <= _FLOAT_MAX
        ):
            cost = _valid_cost("cost", cost)
        level = limiter._level - (now - limiter._t0) * limiter._drain
        if level <= 0.0:
            level = 0.0
            if limiter._held:  # nothing held is still ahead (rule 7)
                limiter._held.clear()
        levels.append(level)
        full = level + cost
        if full > heaviest:
            heaviest = full
        if limiter._drain > fastest:
            fastest = limiter._drain
        excess = full - limiter._burst
        if excess > 0.0:
            if cost > limiter._burst:
                if never < 0:
                    never = i
                continue
            own = excess * limiter._interval
            if own > _RESOLUTION:
                if refused < 0 and own > limiter.config.max_wait:
                    refused = i
                if own > wait:
                    wait, slowest = own, i
    if never >= 0:
        return Refusal(retry_after=_INF, limit=limiters[never].config, index=never)
    # Past the caller's bound, or a common start no limiter's level can be charged at in
    # floats (rule 8: start + cost <= wait * fastest + heaviest, so every level stays finite).
    if refused < 0 and (wait > max_wait or not wait * fastest + heaviest < _INF):
        refused = slowest  # the limiter that sets the wait
    if refused >= 0:
        retry_after = wait if wait < _INF else _FLOAT_MAX
        return Refusal(retry_after=retry_after, limit=limiters[refused].config, index=refused)
    for limiter, level, cost in zip(limiters, levels, costs):  # noqa: B905 (checked above)
        # Charged as of the common start now + wait: tat = max(tat, now + wait) + cost*T,
        # which in units above `now` is max(level, wait/T) + cost.
        reached = wait * limiter._drain
        start = level if level > reached else reached
        limiter._level = start + cost
        limiter._t0 = now
        charge = start - level + cost
        if final and wait == 0.0:  # never given back (rule 9)
            limiter.last_turn = 0
            if charge > 0.0 and limiter._held:
                limiter._held.clear()
        else:
            limiter.last_turn = turn = next(_TURNS)
            if charge > 0.0:
                limiter._held.append([turn, charge, 0.0])
        if charged is not None:
            charged.append(charge)
    return wait


def reserve_sheddable(
    limiters: Sequence[RateLimiter],
    now: float,
    costs: Sequence[float],
    max_wait: float = _INF,
    charged: list[float] | None = None,
) -> float | Refusal:
    """
    :func:`reserve_all` for a call of the lowest priority (``Priority.SHEDDABLE``): at its
    start, every limit with a ``reserve`` still has that share of its burst free
    (``policies.priority.reserve_headroom``: never less room than the call's own cost).

    The call first waits until each such limit's bucket leaves its reserve, ``ahead``
    seconds (the longest of them), then takes its turns as :func:`reserve_all` would at
    ``now + ahead`` (rule 5: any ``now``), so the schedule and the guarantee of rule 4 are
    the same, the sheddable call only later. ``ahead`` counts against *max_wait* and the
    reserving limit's ``max_wait``; the rest against each limit's own, as in
    :func:`reserve_all`. No turn is final: a wait may be cancelled, and it is given back
    like any other (``charged``, ``last_turn``).

    Returns:
        The seconds to wait in all, or a :class:`Refusal` (nothing taken anywhere).
    """
    ahead = 0.0
    keeper = -1
    i = -1
    for limiter, cost in zip(limiters, costs):  # noqa: B905 (reserve_all checks the lengths)
        i += 1
        share = limiter.config.reserve
        if share <= 0.0:
            continue
        cost = _valid_cost("cost", cost)
        if cost > limiter._burst:  # never (rule 3): reserve_all refuses it so
            return reserve_all(limiters, now, costs, max_wait, charged)
        headroom = reserve_headroom(limiter._burst, share, LOWEST, cost)
        wait = (limiter._level_at(now) + cost - headroom) * limiter._interval
        if wait > ahead:
            ahead, keeper = wait, i
    if ahead <= _RESOLUTION:
        return reserve_all(limiters, now, costs, max_wait, charged)
    limit = limiters[keeper].config
    if not (ahead <= max_wait and ahead <= limit.max_wait and ahead < _INF):
        return Refusal(retry_after=ahead if ahead < _INF else _FLOAT_MAX, limit=limit, index=keeper)
    result = reserve_all(limiters, now + ahead, costs, max_wait - ahead, charged)
    if isinstance(result, Refusal):
        return Refusal(
            retry_after=min(ahead + result.retry_after, _FLOAT_MAX),
            limit=result.limit,
            index=result.index,
        )
    return ahead + result
