"""
Adaptive concurrency: a bulkhead limit that finds itself from measured latency.

Theory of operation
-------------------
A fixed ``Bulkhead(max_concurrent=20)`` is a guess. :class:`AdaptiveLimit` replaces the number:
``Bulkhead(max_concurrent=AdaptiveLimit(), max_queued=...)``; the runtime keeps one
:class:`GradientLimit` machine per dependency and feeds it a sample per ended call
(:meth:`GradientLimit.on_sample`); whatever limit it answers becomes the bulkhead's slots.
Rejections and queueing work exactly as with a fixed limit.

The machine is Netflix concurrency-limits' ``Gradient2Limit`` in shape, sans-I/O like the
breaker (it reads no clock: every sample carries ``now``):

* Samples are grouped in windows (at least ``window`` seconds and ``window_samples`` calls);
  a window's mean latency is the *short-term* latency.
* The *long-term* latency follows the short-term one down at once and up slowly (an average
  over ``long_window`` windows): it is what the dependency answers in when it is not queueing.
* Each window, ``gradient = clamp(tolerance * long / short, 0.5, 1)``, and the limit moves
  toward ``limit * gradient + allowance``, by ``smoothing`` of the way, where the allowance is
  ``queue * limit`` (at least 1). While latency holds (gradient 1) the limit grows by the
  allowance; when latency rises the limit shrinks in proportion. Past the dependency's knee,
  latency grows with concurrency (``short = long * limit / knee``), so the limit settles at
  ``knee / (1 - queue)``: 11 % above the knee by default.
* The long-term latency is only the dependency's unloaded latency if it was ever measured
  below the knee: a limit that starts above it (or a load that never let it drop) would see
  only queueing latencies and settle too high (Gradient2's known blind spot). So every
  ``probe_every`` windows one window runs at half the limit (Vegas' and Gradient v1's probe);
  its latency lowers the long-term one if it is lower, and the limit then goes back to where
  it was. Under overload this costs one window in ``probe_every`` at half concurrency.
* A window with a dropped call (a timeout, an overload error: the runtime says which) shrinks
  the limit by ``backoff`` instead (AIMD's answer to loss).
* A window whose busiest moment used less than half the limit does not grow it (Gradient2's
  "app-limited" rule): light load says nothing about how much more the dependency takes.

The limit always stays within ``[min, max]``: every step clamps it there (property-tested).
"""

from __future__ import annotations

import math
from typing import final

import attrs

from ._validators import integer, number

__all__ = ("AdaptiveLimit", "GradientLimit")


@final
@attrs.frozen(kw_only=True)
class AdaptiveLimit:
    """
    A concurrency limit that adapts to measured latency (a :class:`GradientLimit` machine):
    give it as ``Bulkhead(max_concurrent=AdaptiveLimit(...))``.

    Args:
        min: the limit never goes below this, ``>= 1``.
        max: nor above this, ``>= min``.
        initial: the limit to start with, within ``[min, max]``.
        tolerance: how much slower than the long-term latency a window may be before the
            limit shrinks, a number ``>= 1`` (1: any rise shrinks it).
        smoothing: how much of the way toward its new value the limit moves per window,
            ``> 0`` and ``<= 1``.
        window: a window's shortest span, seconds ``> 0``.
        window_samples: a window's fewest calls, ``>= 1``.
        long_window: windows the long-term latency averages over as it rises, ``>= 1``.
        backoff: the factor a window with a dropped call multiplies the limit by, ``> 0``
            and ``<= 1``.
        queue: the growth allowance per window, a fraction of the limit ``>= 0`` and
            ``< 1`` (the limit settles at ``knee / (1 - queue)``).
        probe_every: windows between probes at half the limit, ``>= 2``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument is out of range, or ``min``/``initial``/``max`` out of order.
    """

    min: int = attrs.field(default=1, validator=integer(ge=1))
    max: int = attrs.field(default=200, validator=integer(ge=1))
    initial: int = attrs.field(default=20, validator=integer(ge=1))
    tolerance: float = attrs.field(default=1.0, validator=number(ge=1))
    smoothing: float = attrs.field(default=0.2, validator=number(gt=0, le=1))
    window: float = attrs.field(default=0.05, validator=number(gt=0))
    window_samples: int = attrs.field(default=10, validator=integer(ge=1))
    long_window: int = attrs.field(default=600, validator=integer(ge=1))
    backoff: float = attrs.field(default=0.9, validator=number(gt=0, le=1))
    queue: float = attrs.field(default=0.1, validator=number(ge=0))
    probe_every: int = attrs.field(default=30, validator=integer(ge=2))

    def __attrs_post_init__(self) -> None:
        if not self.queue < 1:
            msg = f"'queue' must be a number >= 0 and < 1, got {self.queue!r}"
            raise ValueError(msg)
        if self.min > self.max:
            msg = f"'min' must be <= 'max', got min={self.min!r} and max={self.max!r}"
            raise ValueError(msg)
        if not self.min <= self.initial <= self.max:
            msg = (
                f"'initial' must be within ['min', 'max'] = [{self.min!r}, {self.max!r}],"
                f" got {self.initial!r}"
            )
            raise ValueError(msg)

    def machine(self) -> GradientLimit:
        """A fresh machine for this configuration, at ``initial``."""
        return GradientLimit(self)


@final
class GradientLimit:
    """The adaptive limit's state (see the module docstring). Sans-I/O; one per dependency."""

    __slots__ = (
        "_dropped",
        "_estimate",
        "_long",
        "_peak",
        "_probe_from",
        "_probe_in",
        "_probing",
        "_samples",
        "_started",
        "_sum",
        "config",
        "limit",
    )

    def __init__(self, config: AdaptiveLimit) -> None:
        self.config = config
        #: the limit now: an int within [min, max]
        self.limit = config.initial
        self._estimate = float(config.initial)
        self._long = math.nan  # the long-term latency (nan: no window yet)
        self._started = math.nan  # when the current window began (nan: before any sample)
        self._samples = 0
        self._sum = 0.0
        self._peak = 0
        self._dropped = False
        self._probe_in = 10  # windows until the next probe (the first comes early)
        #: a probe window is running at half the limit (the estimate is kept meanwhile)
        self._probing = False
        self._probe_from = 0.0  # when the running probe began

    @property
    def probing(self) -> bool:
        """A probe window runs at half the limit: a move nobody needs to be told about."""
        return self._probing

    def on_sample(self, now: float, rtt: float, in_flight: int, dropped: bool) -> int | None:
        """
        One ended call: *rtt* seconds, *in_flight* calls running as it ended (itself
        included), *dropped* when it failed in a way that says "too much" (a timeout, an
        overload). Returns the new limit when it changed, else ``None``.
        """
        if math.isnan(self._started):  # the first window began with the first call
            self._started = now - rtt if 0 <= rtt < math.inf else now
        if self._probing and now - rtt < self._probe_from:
            return None  # started before the probe: it ran at the full limit
        if dropped:
            self._dropped = True
        elif rtt >= 0 and math.isfinite(rtt):
            self._samples += 1
            self._sum += rtt
        self._peak = max(self._peak, in_flight)
        config = self.config
        if self._samples < config.window_samples and not self._dropped:
            return None
        if not now - self._started >= config.window:
            return None
        return self._update(now)

    def _update(self, now: float) -> int | None:
        """A window closed: move the limit (or start or end a probe)."""
        config = self.config
        estimate = self._estimate
        if self._probing:  # the probe's latency may lower the long-term one; nothing else
            self._probing = False
            if self._samples and not self._dropped:
                self._long = min(self._long, self._sum / self._samples)
        elif self._dropped:
            estimate *= config.backoff
        elif self._samples:
            short = self._sum / self._samples
            long = self._long
            if not long <= short:  # the first window, or faster: follow it down at once
                long = short
            else:
                long += (short - long) / config.long_window
            self._long = long
            gradient = 1.0 if short <= 0 else max(0.5, min(1.0, config.tolerance * long / short))
            grows = 2 * self._peak >= estimate  # (app-limited, under half used: no growth)
            if gradient < 1.0 or grows:
                target = estimate * gradient
                if grows:
                    target += max(1.0, config.queue * estimate)
                # Down at once (queueing hurts every call now), up by smoothing of the way.
                if target < estimate:
                    estimate = target
                else:
                    estimate += (target - estimate) * config.smoothing
        self._samples, self._sum, self._peak, self._dropped = 0, 0.0, 0, False
        self._started = now  # the next window begins
        estimate = min(float(config.max), max(float(config.min), estimate))
        self._estimate = estimate
        limit = round(estimate)
        self._probe_in -= 1
        if self._probe_in <= 0 and not math.isnan(self._long):
            self._probe_in = config.probe_every
            self._probing = True
            self._probe_from = now
            limit = max(config.min, limit // 2)
        if limit == self.limit:
            return None
        self.limit = limit
        return limit
