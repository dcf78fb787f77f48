"""Hedge from a configuration file (issue 19): read through the one policy table in _spec."""

from __future__ import annotations

import tomllib

import pytest

from policies import Hedge, Quantile
from supervisor import ConfigError, Supervisor, load_config


def test_a_fixed_delay_and_a_quantile_from_toml() -> None:
    """delay as a duration string, or a table of Quantile's fields; max_hedges as an int."""
    config = load_config(
        tomllib.loads(
            """
            [dependencies.search.hedge]
            delay = "50ms"
            max_hedges = 2

            [dependencies.llm.hedge]
            delay = { q = 0.95, floor = "10ms", cap = "2s" }
            """
        )
    )
    assert {"hedge": Hedge(delay=0.05, max_hedges=2)} == config.policies_for("search")
    assert {"hedge": Hedge(delay=Quantile(q=0.95, floor=0.01, cap=2.0))} == config.policies_for(
        "llm"
    )


def test_bad_hedge_values_are_each_reported() -> None:
    """Each bad field is a problem at its key path, in the policies' own words."""
    source = {
        "dependencies": {
            "a": {"hedge": {"delay": 0, "max_hedges": 0}},
            "b": {"hedge": {"delay": {"q": 1.5}}},
            "c": {"hedge": {"delay": {"q": 0.5, "floor": "2s", "cap": "1s"}}},
        }
    }
    with pytest.raises(ConfigError) as caught:
        load_config(source)
    assert [
        ("dependencies.a.hedge.delay", "must be a number > 0, got 0"),
        ("dependencies.a.hedge.max_hedges", "must be an int >= 1, got 0"),
        ("dependencies.b.hedge.delay.q", "must be a number > 0 and < 1, got 1.5"),
        ("dependencies.c.hedge.delay.floor", "must be <= 'cap', got floor=2.0 > cap=1.0"),
    ] == list(caught.value.problems)


def test_from_config_registers_a_hedged_dependency() -> None:
    """Supervisor.from_config: register(name, fn) takes the file's hedge; an argument wins."""

    async def fn() -> None:
        return None

    supervisor = Supervisor.from_config({"defaults": {"hedge": {"delay": 0.2}}}, env={})
    supervisor.register("llm", fn)
    supervisor.register("given", fn, hedge=None)
    actors = supervisor._actors
    assert (Hedge(delay=0.2), None) == (actors["llm"].hedge, actors["given"].hedge)
