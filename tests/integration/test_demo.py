"""
The demo's outage scenario, end to end: a real HTTP server on loopback, real clients.

Real time is unavoidable here (a real server in a thread); the test asserts what happened,
never how fast.
"""

from __future__ import annotations

import io

import pytest

from supervisor._demo import DemoConfig, run_demo


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_outage_scenario_opens_recovers_and_loses_nothing(backend: str) -> None:
    """The breaker opens in the outage, closes after it; fallbacks serve; nothing is lost."""
    out = io.StringIO()
    result = run_demo(
        DemoConfig(duration=10.0, clients=8, seed=3, backend=backend, live=False), out=out
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
    # every request accounted for: succeeded, fell back, or failed with a clear error
    assert result.issued == len(result.outcomes)
    assert {"success", "fallback"} >= {o.kind for o in result.outcomes}
    assert result.count("success") > 0
    assert "breaker=" in out.getvalue()  # the --no-live lines were written
