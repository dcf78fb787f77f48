"""
The demo end to end: a real HTTP server on loopback, real httpx clients raising plain
``httpx.HTTPStatusError``s, ringfence's default classification and pause doing the rest.

Real time is unavoidable here (a real server in a thread); the tests assert what happened,
never how fast.
"""

from __future__ import annotations

import io

import pytest

from policies import Percentiles, State
from supervisor import DependencyStatus
from supervisor._demo import DemoConfig, DemoResult, run_demo
from supervisor._demo._run import Outcome, _line


def _assert_nothing_lost(result: DemoResult) -> None:
    """Every request issued ended: succeeded or fell back, none failed or went missing."""
    assert result.issued == len(result.outcomes)
    assert {"success", "fallback"} >= {o.kind for o in result.outcomes}
    assert result.count("success") > 0
    assert 0 == result.events_dropped


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_outage_scenario_opens_recovers_and_loses_nothing(backend: str) -> None:
    """The breaker opens in the outage, closes after it; fallbacks serve; nothing is lost."""
    out = io.StringIO()
    # 18 s: the recovery phase (a quarter of the run, 4.5 s) outlasts the worst case of a
    # probe sent in the slow phase (1 s attempt timeout) plus the longest break (2 s).
    result = run_demo(
        DemoConfig(
            duration=18.0, clients=8, seed=3, scenario="outage", backend=backend, live=False
        ),
        out=out,
    )
    phases = {kind: (start, end) for kind, start, end in result.phases}
    outage_start, outage_end = phases["outage"]
    opened = [t for t, target, _ in result.transitions if target == "open"]
    closed_after = [
        t for t, target, _ in result.transitions if target == "closed" and t > outage_end
    ]
    assert any(t <= outage_end for t in opened), result.transitions
    assert any(state == "open" for t, state, *_ in result.states if outage_start <= t <= outage_end)
    assert closed_after, result.transitions
    assert "closed" == result.states[-1][1]
    assert any(
        o.kind == "fallback" for o in result.outcomes if outage_start <= o.start <= outage_end
    )
    # The 5xx bursts and the outage reach the fallback as plain httpx errors or, once the
    # breaker opened, as BreakerOpen; the classifier alone made them count.
    assert result.kept_away() > 0
    assert result.server_answers.get(503, 0) > 0
    _assert_nothing_lost(result)
    lines = out.getvalue()
    assert "breaker=" in lines  # the --no-live lines were written
    assert "'totals' count since the start" in lines


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_rate_limited_scenario_pauses_and_never_opens(backend: str) -> None:
    """429s pause the dependency and keep calls from the server; the breaker never opens."""
    result = run_demo(
        DemoConfig(
            duration=6.0, clients=8, seed=3, scenario="rate-limited", backend=backend, live=False
        ),
        out=io.StringIO(),
    )
    assert result.server_answers.get(429, 0) > 0
    assert result.pauses, result.server_answers
    # Only a 429's Retry-After pauses: at most one pause (or extension) per 429 answered.
    assert len(result.pauses) <= result.server_answers[429]
    assert result.kept_by_pause() >= 1
    # Every call the pause turned away got the fallback, with ringfence's RateLimited.
    assert result.rejected_by_pause() == result.causes("fallback")["RateLimited"]
    # A 429 is flow control, not a sick server: with the default Breaker.record, no opening.
    assert [] == [t for t, target, _ in result.transitions if target == "open"]
    _assert_nothing_lost(result)


def _status(*, paused_until: float | None, pause_remaining: float = 0.0) -> DependencyStatus:
    return DependencyStatus(
        name="llm",
        state=State.CLOSED,
        since=0.0,
        consecutive_failures=0,
        calls=12,
        failures=0,
        rejected=5,
        failure_rate=0.0,
        in_flight=1,
        queued=0,
        break_duration=None,
        transitions=(),
        errors={},
        latency=Percentiles(p50=0.1, p95=0.2, p99=0.3),
        retries=4,
        rejected_by={"paused": 3, "breaker_open": 2},
        paused_until=paused_until,
        pause_remaining=pause_remaining,
    )


def test_no_live_line_shows_the_pause_and_labels_rates_and_totals() -> None:
    """A --no-live line says how long the pause lasts, and which figures are totals or rates."""
    result = DemoResult(config=DemoConfig(live=False))
    result.outcomes += [Outcome(0.1, 2.5, "success", ""), Outcome(0.2, 0.3, "fallback", "X")]

    paused = _line(_status(paused_until=9.0, pause_remaining=0.42), "rate_limited", result, 3.0)
    not_paused = _line(_status(paused_until=None), "normal", result, 3.0)

    assert "paused=0.42s" in paused
    assert "paused=no" in not_paused
    assert "| last 1s: calls=1 " in paused
    assert "| totals: ok=1     fallback=1     retries=4     rejected=5     (paused 3)" in paused


def test_pause_figures_count_each_call_once() -> None:
    """Calls turned away by the pause and calls held by it add up; overlapping pauses merge."""
    result = DemoResult(
        config=DemoConfig(live=False),
        outcomes=[
            Outcome(1.0, 1.4, "success", "", arrived_paused=True),  # held, then answered
            Outcome(1.1, 1.1, "fallback", "RateLimited", arrived_paused=True),  # turned away
            Outcome(1.2, 1.5, "fallback", "HTTP 429", arrived_paused=True),  # held, then a 429
            Outcome(2.0, 2.1, "success", ""),
        ],
        pauses=[(1.0, 1.5, 0.5), (1.3, 2.0, 0.7), (3.0, 3.25, 0.25)],
        rejected_by={"paused": 1, "breaker_open": 7},
    )

    assert 1 == result.rejected_by_pause()
    assert 2 == result.waited_for_pause()
    assert 3 == result.kept_by_pause()
    assert [(1.0, 2.0), (3.0, 3.25)] == result.paused_spans()
    assert 1.25 == result.time_paused()
