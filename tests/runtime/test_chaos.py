"""
Fault injection at run time (issue 21): ``Chaos`` injects at its rate (seeded: the
supervisor's rng), counted in ``status().chaos`` and told by ``ChaosInjected`` events, from
code or a TOML file; a dependency without it keeps its own function (nothing wrapped).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from policies import Chaos
from supervisor import ChaosInjected, Supervisor
from tests.runtime.conftest import Fake, guard

pytestmark = pytest.mark.anyio

N = 2_000
RATE = 0.2


def within_binomial_bounds(k: int, n: int, p: float) -> bool:
    """|k - n p| within 5 standard deviations: a seeded run outside it is a bug (p < 1e-6)."""
    return abs(k - n * p) <= 5 * math.sqrt(n * p * (1 - p))


async def test_errors_injected_at_the_rate_counted_and_told() -> None:
    sup = Supervisor(rng=random.Random(21))
    fake = Fake()
    sup.register("dep", fake, chaos=Chaos(rate=RATE, error=ConnectionError))
    raised = 0
    with guard():
        async with sup, sup.events(kinds=[ChaosInjected], buffer=N) as events:
            for _ in range(N):
                try:
                    await sup.call("dep")
                except ConnectionError:
                    raised += 1
            told = 0
            while told < raised:
                event = await events.__anext__()
                assert isinstance(event, ChaosInjected)
                assert (("error",), "ConnectionError") == (event.injected, event.error)
                told += 1
    assert within_binomial_bounds(raised, N, RATE), raised
    assert N - raised == fake.count  # an injected call never reached the dependency
    status = sup.status("dep")
    assert {"error": raised} == dict(status.chaos)
    assert (N, raised) == (status.requests, status.raised)


async def test_a_substitute_result_and_latency_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "ringfence.toml"
    path.write_text(
        '[dependencies.dep.chaos]\nrate = 0.9\nresult = "canned"\nlatency = "1ms"\n',
        encoding="utf-8",
    )
    # a staging deploy's override wins over the file
    sup = Supervisor.from_config(
        path, env={"RINGFENCE_DEP__CHAOS__RATE": "0.5"}, rng=random.Random(7)
    )
    fake = Fake()
    sup.register("dep", fake)
    with guard():
        async with sup:
            answers = [await sup.call("dep") for _ in range(N)]
    canned = answers.count("canned")
    assert within_binomial_bounds(canned, N, 0.5), canned
    assert N - canned == fake.count
    assert {"latency": canned, "result": canned} == dict(sup.status("dep").chaos)


async def test_without_chaos_the_function_is_not_wrapped_and_reconfigure_unwraps() -> None:
    sup = Supervisor(rng=random.Random(1))
    fake = Fake()
    handle = sup.register("dep", fake)
    with guard():
        async with sup:
            assert {} == dict(sup.status("dep").chaos)
            await sup.reconfigure("dep", chaos=Chaos(rate=1.0, result="x"))
            assert "x" == await handle()
            await sup.reconfigure("dep", chaos=None)
            assert "ok" == await handle()
    assert 1 == fake.count
    assert {"result": 1} == dict(sup.status("dep").chaos)
