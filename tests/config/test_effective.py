"""
`ringfence config FILE` prints the effective values as TOML that loads back (issue 21):
defaults filled in (a ratio breaker's min_throughput = 10, not None), schedules named.
"""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from policies import backoff, break_duration
from supervisor import load_config
from supervisor.__main__ import main
from supervisor._effective import effective_toml

EXAMPLE = Path(__file__).parents[2] / "examples" / "ringfence.toml"


def _round_trip(text: str) -> tuple[str, str]:
    first = effective_toml(load_config(tomllib.loads(text), env={}))
    second = effective_toml(load_config(tomllib.loads(first), env={}))
    return first, second


def test_defaults_the_policies_fill_in_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ratio breaker prints min_throughput = 10 and sampling = 30.0; None prints `false`."""
    monkeypatch.delenv("RINGFENCE_LLM__BREAKER__SAMPLING", raising=False)
    path = tmp_path / "ringfence.toml"
    path.write_text("[dependencies.llm.breaker]\nfailure_ratio = 0.5\n[dependencies.db.breaker]\n")
    assert 0 == main(["config", str(path)])
    out = capsys.readouterr().out
    parsed = tomllib.loads(out)
    llm, db = parsed["dependencies"]["llm"]["breaker"], parsed["dependencies"]["db"]["breaker"]
    assert (0.5, 10, 30.0, False) == (
        llm["failure_ratio"],
        llm["min_throughput"],
        llm["sampling"],
        llm["failure_threshold"],
    )
    assert (5, False) == (db["failure_threshold"], db["min_throughput"])
    assert {"constant": {"seconds": 30.0}} == db["break_duration"]
    assert "None" not in out


def test_the_example_round_trips() -> None:
    """What it prints for examples/ringfence.toml loads back to the same print."""
    text = EXAMPLE.read_text()
    first, second = _round_trip(text)
    assert first == second
    assert "rate_limit" in tomllib.loads(first)["dependencies"]["llm"]


def _factories(module: object) -> list[tuple[str, str]]:
    names = [
        name
        for name in module.__all__  # type: ignore[attr-defined]
        if inspect.isfunction(getattr(module, name)) and not name.startswith("as_")
    ]
    return [(module.__name__.split(".")[-1], name) for name in names]  # type: ignore[attr-defined]


BREAK_DURATIONS = {
    "constant": "{ constant = 12 }",
    "linear": "{ linear = { start = 2, step = 3 } }",
}
SCHEDULES = {
    "constant": "{ constant = 0.5 }",
    "linear": "{ linear = { start = 1, step = 2 } }",
    "exponential": "{ exponential = { base = 0.3, cap = 7 } }",
    "full": "{ full = { exponential = { base = 0.2 } } }",
    "proportional": "{ proportional = { linear = { start = 1, step = 1 }, ratio = 0.3 } }",
    "decorrelated": "{ decorrelated = { median = 2, cap = 9 } }",
    "adaptive": "{ adaptive = { start = 5 } }",
}


@pytest.mark.parametrize(("module", "name"), _factories(backoff) + _factories(break_duration))
def test_every_schedule_round_trips(module: str, name: str) -> None:
    """Each named schedule prints as the table it is read from, arguments spelled out."""
    field = "retry" if module == "backoff" else "breaker"
    default = f"{{ {name} = {{ start = 2 }} }}"
    written = (SCHEDULES if module == "backoff" else BREAK_DURATIONS).get(name, default)
    first, second = _round_trip(f"[dependencies.x.{field}]\n{module} = {written}\n")
    assert first == second
    printed = tomllib.loads(first)["dependencies"]["x"][field][module]
    assert [name] == list(printed)
