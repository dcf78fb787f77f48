"""
An adaptive concurrency limit from a configuration file (issue 20, part 1): ``max_concurrent``
takes a number or a table of ``AdaptiveLimit``'s fields, as ``Hedge.delay`` takes a number or
a table of ``Quantile``'s; checked at load with every problem at its key path; printed by
``ringfence config`` as a table that loads back.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from policies import AdaptiveLimit, Bulkhead
from supervisor import ConfigError, load_config
from supervisor.__main__ import main


def test_a_table_of_adaptive_limit_fields_is_an_adaptive_limit() -> None:
    """Inline or as its own table; durations as strings; fields left out keep their defaults."""
    config = load_config(
        tomllib.loads(
            """
            [dependencies.llm.bulkhead]
            max_concurrent = { min = 2, max = 64, initial = 8, window = "100ms" }
            max_queued = 16

            [dependencies.search.bulkhead.max_concurrent]
            max = 50

            [dependencies.db.bulkhead]
            max_concurrent = 20
            """
        ),
        env={},
    )
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(min=2, max=64, initial=8, window=0.1), max_queued=16)
        == config.policies_for("llm")["bulkhead"]
    )
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(max=50)) == config.policies_for("search")["bulkhead"]
    )
    assert Bulkhead(max_concurrent=20) == config.policies_for("db")["bulkhead"]


def test_defaults_merge_per_field_and_a_number_replaces_the_table() -> None:
    """A default adaptive limit reaches a dependency that sets only max_queued; a number wins."""
    config = load_config(
        {
            "defaults": {"bulkhead": {"max_concurrent": {"max": 100}}},
            "dependencies": {
                "a": {"bulkhead": {"max_queued": 5}},
                "b": {"bulkhead": {"max_concurrent": 7}},
            },
        },
        env={},
    )
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(max=100), max_queued=5)
        == (config.policies_for("a")["bulkhead"])
    )
    assert Bulkhead(max_concurrent=7) == config.policies_for("b")["bulkhead"]
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(max=100))
        == (config.policies_for("unlisted")["bulkhead"])
    )


def test_the_environment_switches_between_fixed_and_adaptive() -> None:
    """A TOML table in a variable makes a fixed limit adaptive; a deeper key sets one field."""
    source = {
        "dependencies": {
            "fixed": {"bulkhead": {"max_concurrent": 8}},
            "adaptive": {"bulkhead": {"max_concurrent": {"max": 10}}},
        }
    }
    config = load_config(
        source,
        env={
            "RINGFENCE_FIXED__BULKHEAD__MAX_CONCURRENT": "{ min = 4, initial = 8 }",
            "RINGFENCE_ADAPTIVE__BULKHEAD__MAX_CONCURRENT__MAX": "100",
        },
    )
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(min=4, initial=8))
        == (config.policies_for("fixed")["bulkhead"])
    )
    assert (
        Bulkhead(max_concurrent=AdaptiveLimit(max=100))
        == (config.policies_for("adaptive")["bulkhead"])
    )
    back = load_config(source, env={"RINGFENCE_ADAPTIVE__BULKHEAD__MAX_CONCURRENT": "30"})
    assert Bulkhead(max_concurrent=30) == back.policies_for("adaptive")["bulkhead"]


LIMIT = ("dependencies", "x", "bulkhead", "max_concurrent")


@pytest.mark.parametrize(
    ("limit", "problems"),
    [
        ({"min": 5, "max": 2}, [("min", "must be <= 'max', got min=5 and max=2")]),
        (
            {"min": 2, "max": 10, "initial": 20},
            [("initial", "must be within ['min', 'max'] = [2, 10], got 20")],
        ),
        (
            {"initial": 0, "smoothing": math.nan, "window": math.inf},
            [
                ("initial", "must be an int >= 1, got 0"),
                ("smoothing", "must be a finite number > 0 and <= 1, got nan"),
                ("window", "must be a finite number > 0, got inf"),
            ],
        ),
        ({"max": 1.5}, [("max", "must be an int >= 1, got 1.5 of type float")]),
        (
            {"maximum": 10},
            [
                (
                    "maximum",
                    "unknown field of AdaptiveLimit, did you mean 'max'?",
                )
            ],
        ),
        (
            {"adaptive": {"max": 10}},
            [
                (
                    "adaptive",
                    "unknown field of AdaptiveLimit; expected one of: min, max, initial,"
                    " tolerance, smoothing, window, window_samples, long_window, backoff,"
                    " queue, probe_every",
                )
            ],
        ),
    ],
)
def test_a_bad_adaptive_limit_is_a_problem_at_its_key(
    limit: dict[str, object], problems: list[tuple[str, str]]
) -> None:
    """Each bad field is named with its value, at its key path, in the policy's own words."""
    with pytest.raises(ConfigError) as caught:
        load_config({"dependencies": {"x": {"bulkhead": {"max_concurrent": limit}}}}, env={})
    assert [(".".join((*LIMIT, key)), message) for key, message in problems] == list(
        caught.value.problems
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("adaptive", "'adaptive' of type str"),
        (False, "False of type bool"),
        (2.5, "2.5 of type float"),
    ],
)
def test_a_value_that_is_neither_a_number_nor_a_table_says_a_table_is_the_other_way(
    value: object, shown: str
) -> None:
    """The policy's message names the number only; the file's reader adds the table form."""
    with pytest.raises(ConfigError) as caught:
        load_config({"dependencies": {"x": {"bulkhead": {"max_concurrent": value}}}}, env={})
    assert [
        (
            ".".join(LIMIT),
            f"must be an int >= 1, got {shown};"
            " or a table of AdaptiveLimit fields (min, max, initial, ...)",
        )
    ] == list(caught.value.problems)


def test_ringfence_config_prints_every_field_and_it_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ringfence config` writes the adaptive limit as a table of all its fields; read back,
    it is the same limit, and printing it again prints the same text."""
    for name in ("RINGFENCE_LLM__BULKHEAD__MAX_CONCURRENT", "RINGFENCE_DB__BULKHEAD__MAX_QUEUED"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ringfence.toml"
    path.write_text(
        "[dependencies.llm.bulkhead]\n"
        'max_concurrent = { max = 64, initial = 8, window = "100ms" }\n'
        "[dependencies.db.bulkhead]\n"
        "max_concurrent = 20\n"
    )
    assert 0 == main(["config", str(path)])
    printed = capsys.readouterr().out
    llm = tomllib.loads(printed)["dependencies"]["llm"]["bulkhead"]["max_concurrent"]
    assert {
        "min": 1,
        "max": 64,
        "initial": 8,
        "tolerance": 1.0,
        "smoothing": 0.2,
        "window": 0.1,
        "window_samples": 10,
        "long_window": 600,
        "backoff": 0.9,
        "queue": 0.1,
        "probe_every": 30,
    } == llm
    again = tmp_path / "again.toml"
    again.write_text(printed)
    first, second = load_config(path, env={}), load_config(again, env={})
    assert (first.defaults, first.dependencies) == (second.defaults, second.dependencies)
    assert 0 == main(["config", str(again)])
    assert printed.split("\n", 1)[1] == capsys.readouterr().out.split("\n", 1)[1]


def test_the_readmes_configuration_example_loads_with_an_adaptive_limit() -> None:
    """The README's TOML example (its configuration section) loads as the text says."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Configuration from a file", 1)[1]
    text = section.split("```toml\n", 1)[1].split("```", 1)[0]
    llm = load_config(tomllib.loads(text), env={}).policies_for("llm")
    expected = Bulkhead(max_concurrent=AdaptiveLimit(min=1, max=64, initial=8), max_queued=32)
    assert expected == llm["bulkhead"]
