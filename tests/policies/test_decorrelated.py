"""backoff.decorrelated against an independent transcription of Polly's published algorithm."""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence

import pytest

from policies import backoff

TICKS_PER_SECOND = 10_000_000  # .NET TimeSpan ticks are 100 ns
LONG_MAX = 2**63 - 1


def polly_v2(draws: Sequence[float], base: float, max_delay: float) -> list[float]:
    """
    Polly.Core ``RetryHelper.DecorrelatedJitterBackoffV2``, line by line, one wait per draw.

    The C# (Polly.Contrib.WaitAndRetry, by George Bukazhin)::

        double t = attempt + randomizer();
        double next = Math.Pow(2, t) * Math.Tanh(Math.Sqrt(PFactor * t));
        if (double.IsInfinity(next)) { prev = next; return maxDelay; }
        double formulaIntrinsicValue = next - prev;
        prev = next;
        long ticks = (long)Math.Min(formulaIntrinsicValue * RpScalingFactor
                                    * targetTicksFirstDelay, maxTimeSpanDouble);

    with ``RpScalingFactor = 1 / 1.4d``, ``PFactor = 4.0``, ``attempt`` 0-based and the
    result clamped to ``maxDelay``.
    """
    rp_scaling_factor = 1 / 1.4
    p_factor = 4.0
    target_ticks_first_delay = round(base * TICKS_PER_SECOND)
    max_delay_ticks = round(max_delay * TICKS_PER_SECOND)
    prev = 0.0
    waits = []
    for attempt, u in enumerate(draws):
        t = attempt + u
        try:
            next_ = math.pow(2, t) * math.tanh(math.sqrt(p_factor * t))
        except OverflowError:  # C#'s Math.Pow returns +infinity instead
            next_ = math.inf
        if math.isinf(next_):
            prev = next_
            waits.append(max_delay)
            continue
        formula_intrinsic_value = next_ - prev
        prev = next_
        ticks = int(
            min(formula_intrinsic_value * rp_scaling_factor * target_ticks_first_delay, LONG_MAX)
        )
        waits.append(min(ticks, max_delay_ticks) / TICKS_PER_SECOND)
    return waits


class Scripted(random.Random):
    """A generator whose random() plays back the given draws, in order."""

    def __init__(self, draws: Sequence[float]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def ks_statistic(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the empirical CDFs."""
    xs, ys = sorted(xs), sorted(ys)
    return max(
        abs(bisect.bisect_right(xs, v) / len(xs) - bisect.bisect_right(ys, v) / len(ys))
        for v in (*xs, *ys)
    )


@pytest.mark.parametrize("attempt", [1, 2, 3, 7, 30, 1024, 1025, 10_000])
@pytest.mark.parametrize("seed", range(10))
def test_each_wait_equals_pollys_for_the_same_draws(attempt: int, seed: int) -> None:
    """Retry n's wait is Polly's n-th wait when fed Polly's (n-1)-th and n-th draws."""
    source = random.Random(seed)
    draws = [source.random() for _ in range(attempt)]
    expected = polly_v2(draws, base=0.2, max_delay=30.0)[-1]
    rng = Scripted(draws[-2:])
    got = backoff.decorrelated(median=0.2, cap=30.0)(attempt, rng)
    assert expected == pytest.approx(got, rel=1e-12, abs=1 / TICKS_PER_SECOND)  # Polly's ticks
    assert [] == rng.draws  # exactly those draws were used


def test_first_and_second_waits_have_pollys_distribution() -> None:
    """KS test, independent seeds: retries 1 and 2 are drawn as Polly draws them."""
    n = 20_000
    schedule = backoff.decorrelated(median=1.0, cap=60.0)
    ours = random.Random(1)
    first = [schedule(1, ours) for _ in range(n)]
    second = [schedule(2, ours) for _ in range(n)]
    theirs = random.Random(2)
    polly = [polly_v2([theirs.random(), theirs.random()], 1.0, 60.0) for _ in range(n)]
    critical = 1.95 * math.sqrt(2 / n)  # alpha = 0.001
    assert ks_statistic([w[0] for w in polly], first) < critical
    assert ks_statistic([w[1] for w in polly], second) < critical
    # The figures: Polly's first retry spans about [0.01, 1.38] x median (the lower
    # end is 0: near U = 0 the wait is about 2 sqrt(U) / 1.4, 0.01 for U = 1 / 20,000).
    assert 0.0 <= min(first) < 0.02
    assert 1.37 < max(first) < 2 * math.tanh(2) / 1.4
    assert 0.90 == pytest.approx(statistics.median(first), abs=0.01)


def test_the_old_formula_would_fail_the_distribution_check() -> None:
    """The KS check has teeth: the first wait of the pre-issue-8 formula, [0.675, 1.39]."""
    n = 5_000
    old = random.Random(3)
    curve = lambda t: 2**t * math.tanh(math.sqrt(4 * t))  # noqa: E731
    before = [curve(1 + old.random()) * 1.4 / 4 for _ in range(n)]
    theirs = random.Random(4)
    polly = [polly_v2([theirs.random()], 1.0, 60.0)[0] for _ in range(n)]
    assert ks_statistic(polly, before) > 1.95 * math.sqrt(2 / n)


def test_waits_are_positive_and_capped() -> None:
    """Every wait is > 0 and <= cap; the cap applies once the curve outgrows it."""
    schedule = backoff.decorrelated(median=0.5, cap=4.0)
    rng = random.Random(5)
    waits = [schedule(n % 15 + 1, rng) for n in range(3_000)]
    assert all(0.0 < w <= 4.0 for w in waits)
    assert 4.0 == max(waits)
    assert 4.0 == schedule(1025, Scripted([0.0, 0.0]))
