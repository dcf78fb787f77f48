"""
Retry budget: across all callers of a dependency, retries stay a fraction of calls.

Per-call retry limits (``Retry(attempts=4)``) multiply load during an outage: every caller
retries, so a sick dependency sees up to four times its normal traffic, just when it can least
take it (a *retry storm*). A budget caps retries for the dependency as a whole. The rule is
Finagle's ``RetryBudget`` (twitter/finagle, ``finagle-core/.../service/RetryBudget.scala``,
with the same defaults: ``ttl`` 10 s, ``minRetriesPerSec`` 10, ``percentCanRetry`` 0.2): over the
last ``window`` seconds,

    retries + 1 <= ratio * calls + min_per_second * window

must hold for a retry to be made. The second term is a floor, so a quiet dependency (a few
calls a minute) can still retry its occasional failure; under load the first term dominates
and retries add at most ``ratio`` (20 %) to the traffic.

:class:`RetryBudget` counts in 10 time slices, as the breaker's
:class:`~policies.window.SlidingWindow` does, so memory is O(slices) and each operation
O(slices). Like the breaker's window it is granular: an event leaves the count up to one slice
(``window / 10``) after ``window`` seconds. Unlike it, reading never drops a slice: only
counting an event does. :meth:`RetryBudget.snapshot` is a pure read, because ``status()`` may
run in another thread (a Prometheus exporter's) at a ``now`` of its own, ahead of the owner's
next event or behind its last one: a read that expired slices in place lost the owner's
updates, and the counts drifted for good (issue 16, item 3, defect 5).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Final, final

import attrs

from ._validators import check_derived, number, seconds

__all__ = ("Budget", "BudgetStatus", "RetryBudget")

# Time slices in the window (the breaker's ratio window uses 10 as well).
_BUCKETS: Final = 10
# Slack for products such as 0.29 * 100 == 28.999999999999996: 29 retries were meant.
_SLACK: Final = 1e-9
# `ratio * calls + min_per_second * window` must stay a finite count for any number of calls
# a window can hold (< 2**64): each term at most 1e300, far past "no limit at all" (issue 16,
# item 3, defect 9: a huge ratio made the remaining count inf, and snapshot() raised
# OverflowError flooring it).
_MOST_CALLS: Final = 2**64
_TERM_MAX: Final = 1e300


@final
@attrs.frozen(kw_only=True)
class Budget:
    """
    How many retries a dependency may make, across all its callers.

    Args:
        ratio: retries allowed per call in the window, a finite number ``>= 0``
            (0.2: retries add at most 20 % to the traffic); ``ratio * 2**64`` (the most calls
            a window can count) at most ``1e300``.
        min_per_second: retries per second allowed whatever the traffic, ``>= 0``; the
            window holds ``min_per_second * window`` of them (at most ``1e300``).
        window: the sliding window in seconds (or a ``timedelta``), finite ``> 0``, counted
            in 10 time slices (a tenth of it must be a float ``> 0`` too).

    A retry is made when ``retries + 1 <= ratio * calls + min_per_second * window`` over the
    last ``window`` seconds; otherwise the error goes to the fallback or the caller.
    ``Retry(budget=None)`` turns the budget off.

    Raises:
        TypeError, ValueError: an argument has the wrong type or is out of range.

    Warns:
        UserWarning: ``ratio`` and ``min_per_second`` are both 0: no retry is ever made.
    """

    ratio: float = attrs.field(default=0.2, validator=number(ge=0))
    min_per_second: float = attrs.field(default=10.0, validator=number(ge=0))
    window: float = attrs.field(default=10.0, converter=seconds, validator=number(gt=0))

    def __attrs_post_init__(self) -> None:
        # What RetryBudget computes from them: its slices (a subnormal window made them 0.0
        # wide, and `now % 0.0` raised) and its allowance.
        window = self.window
        check_derived(
            f"'window' / {_BUCKETS} (the width of one of the window's time slices)",
            window / _BUCKETS,
            f"{window!r} / {_BUCKETS}",
        )
        check_derived(
            "'min_per_second' * 'window' (the retries allowed whatever the traffic)",
            self.min_per_second * window,
            f"{self.min_per_second!r} * {window!r}",
            gt=None,
            le=_TERM_MAX,
        )
        check_derived(
            "'ratio' * 2**64 (the retries allowed for the most calls a window can count)",
            self.ratio * _MOST_CALLS,
            f"{self.ratio!r} * 2**64",
            gt=None,
            le=_TERM_MAX,
        )
        if self.ratio == 0 and self.min_per_second == 0:
            warnings.warn(
                "Budget(ratio=0, min_per_second=0) allows no retry at all; "
                "Retry(attempts=1) says that more plainly",
                UserWarning,
                stacklevel=3,
            )

    def machine(self) -> RetryBudget:
        """A fresh :class:`RetryBudget` for this configuration, with nothing counted."""
        return RetryBudget(self)


@final
@attrs.frozen(kw_only=True)
class BudgetStatus:
    """
    A retry budget as seen at one instant (for ``status().budget``).

    Attributes:
        calls: calls counted in the window.
        retries: retries made in the window.
        remaining: retries that could be made now (0 when the budget is spent).
        refused: retries refused since the budget was created (a lifetime total).
    """

    calls: int
    retries: int
    remaining: int
    refused: int


@final
class RetryBudget:
    """
    The retry budget of one dependency. Not thread-safe and not meant to be: exactly one owner
    (the dependency's actor) calls it. Create it with :meth:`Budget.machine`.

    The runtime calls :meth:`on_call` once per call (its first attempt) and
    :meth:`try_retry` before each retry it would make.
    """

    __slots__ = (
        "_allowance",
        "_open",
        "_open_end",
        "_ratio",
        "_sampling",
        "_slice",
        "_slices",
        "config",
        "refused",
    )

    def __init__(self, config: Budget) -> None:
        self.config = config
        self._ratio = config.ratio
        self._allowance = config.min_per_second * config.window + _SLACK
        self._sampling = config.window
        self._slice = config.window / _BUCKETS
        # Each slice: [slice_start, calls, retries], oldest first. Only _count() and on_call()
        # change them.
        self._slices: deque[list[float]] = deque()
        # The newest slice (the last of _slices) and when it ends: a call before then is one
        # increment (on_call, once per call), with no slice to find or open.
        self._open: list[float] = [-math.inf, 0, 0]
        self._open_end = -math.inf
        #: retries refused since creation.
        self.refused = 0

    def on_call(self, now: float) -> None:
        """Count one call (its first attempt; retries are counted by :meth:`try_retry`)."""
        if now < self._open_end:
            self._open[1] += 1
        else:
            self._count(now, 1)

    def _count(self, now: float, column: int) -> None:
        """Add one event at *now* to *column* (1: calls, 2: retries) of its slice."""
        slices = self._slices
        if slices and now < slices[-1][0] + self._slice:
            current = slices[-1]
        else:
            horizon = now - self._sampling
            while slices and slices[0][0] + self._slice <= horizon:
                slices.popleft()
            current = [now - (now % self._slice), 0, 0]
            slices.append(current)
            self._open, self._open_end = current, current[0] + self._slice
        current[column] += 1

    def _remaining(self, now: float) -> tuple[int, int, float]:
        """``(calls, retries, retries allowed minus made)`` over the window ending at *now*.

        Pure: it changes nothing, whatever *now* is, so :meth:`snapshot` may run in another
        thread than the owner's, at a time of its own (``status()`` from an exporter).
        """
        horizon = now - self._sampling
        width = self._slice
        calls = retries = 0.0
        # tuple() copies the deque in one step, so the owner appending or dropping a slice
        # meanwhile cannot break the iteration; slices are never reused once dropped.
        for start, slice_calls, slice_retries in tuple(self._slices):
            if start + width > horizon:
                calls += slice_calls
                retries += slice_retries
        return int(calls), int(retries), self._ratio * calls + self._allowance - retries

    def try_retry(self, now: float) -> bool:
        """
        Whether a retry may be made at *now*; if so it is counted (the retry is taken).

        Returns:
            ``True`` when ``retries + 1 <= ratio * calls + min_per_second * window`` over the
            window ending at *now*; ``False`` (and the refusal counted) otherwise.
        """
        if self._remaining(now)[2] >= 1.0:
            self._count(now, 2)
            return True
        self.refused += 1
        return False

    def snapshot(self, now: float) -> BudgetStatus:
        """
        The counts over the window ending at *now*, as a frozen record. A pure read: any
        *now* (ahead of the latest event or behind it), from any thread, changes nothing.
        """
        calls, retries, left = self._remaining(now)
        return BudgetStatus(
            calls=calls, retries=retries, remaining=max(0, math.floor(left)), refused=self.refused
        )
