"""
Configuration from TOML and the environment (issue 9): load_config, Config, ``ringfence config``.

Pure tests: no event loop. Every bad input pins the exact problems, path and message.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from policies import Breaker, Bulkhead, Retry, Timeout, backoff, break_duration
from policies._validators import number
from policies.classify import ErrorKind
from policies.rate_limit import RateLimit
from supervisor import (
    _config as config_module,
)  # not `_config`: attrs-generated code reads that global
from supervisor.__main__ import main
from supervisor._config import Config, ConfigError, load_config
from supervisor._effective import effective_toml

EXAMPLE = Path(__file__).parents[2] / "examples" / "ringfence.toml"
KINDS = "transient, rate_limited, permanent, auth, invalid_input, unknown"


def problems(source: object, env: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The problems load_config reports for *source*."""
    with pytest.raises(ConfigError) as caught:
        load_config(source, env={} if env is None else env)  # type: ignore[arg-type]
    return caught.value.problems


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "ringfence.toml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def dep(**policies: object) -> dict[str, object]:
    """A mapping source with one dependency, ``x``."""
    return {"dependencies": {"x": policies}}


# ============================================================================ the example file


def test_example_file_loads_with_its_documented_values() -> None:
    """examples/ringfence.toml loads, and its comments say what each dependency gets."""
    config = load_config(EXAMPLE, env={})

    llm = config.policies_for("llm")
    assert 3 == llm["retry"].attempts  # type: ignore[attr-defined]  # from [defaults.retry]
    assert backoff.full(backoff.exponential(base=0.5, factor=2, cap=10)) == llm["retry"].backoff  # type: ignore[attr-defined]
    assert Timeout(attempt=60, total=120) == llm["timeout"]
    assert Bulkhead(max_concurrent=8, max_queued=32) == llm["bulkhead"]
    assert (
        RateLimit(500, per=60, max_wait=2),
        RateLimit(60, per=1, burst=10),
    ) == llm["rate_limit"]
    assert break_duration.adaptive(5, factor=2, cap=300, healthy_after=60) == (
        llm["breaker"].break_duration  # type: ignore[attr-defined]
    )
    assert True is llm["critical"]
    payments = config.policies_for("payments")
    assert None is payments["retry"]
    assert Timeout(attempt=10, total=15) == payments["timeout"]
    assert backoff.constant(0.05) == config.policies_for("db")["retry"].backoff  # type: ignore[attr-defined]
    assert ["llm", "db", "payments"] == list(config.dependencies)


def test_kinds_become_error_kinds() -> None:
    """retry_on and record list kinds by name; they mean what the same ErrorKinds mean in code."""
    config = load_config(EXAMPLE, env={})

    llm = config.policies_for("llm")
    kinds = (ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED, ErrorKind.UNKNOWN)
    assert Retry(retry_on=kinds).retry_on == (
        llm["retry"].retry_on  # type: ignore[attr-defined]
    )
    assert Breaker(record=(ErrorKind.TRANSIENT,)).record == llm["breaker"].record  # type: ignore[attr-defined]


# ============================================================================ merging


def test_defaults_merge_per_field() -> None:
    """[defaults.retry] attempts and [dependencies.x.retry] backoff together give both."""
    config = load_config(
        {
            "defaults": {"retry": {"attempts": 4}},
            "dependencies": {"x": {"retry": {"backoff": {"constant": 1}}}},
        },
        env={},
    )

    assert Retry(attempts=4, backoff=backoff.constant(1)) == config.policies_for("x")["retry"]
    assert Retry(attempts=4) == config.defaults["retry"]


def test_a_dependency_value_wins_and_false_switches_a_default_off() -> None:
    """The dependency's field wins; `false` is None for a field or for a whole policy."""
    config = load_config(
        {
            "defaults": {"timeout": {"attempt": 5, "total": 10}, "retry": {}},
            "dependencies": {"x": {"timeout": {"total": False}, "retry": False}},
        },
        env={},
    )

    assert {"retry": None, "timeout": Timeout(attempt=5)} == config.policies_for("x")


def test_unlisted_dependency_gets_the_defaults_in_a_new_dict() -> None:
    """policies_for() of a name the file does not list is the defaults, as a fresh dict."""
    config = load_config({"defaults": {"critical": True, "bulkhead": {"max_concurrent": 2}}})
    got = config.policies_for("other")
    got["critical"] = False

    assert {"critical": True, "bulkhead": Bulkhead(max_concurrent=2)} == config.policies_for(
        "other"
    )
    assert {} == dict(load_config({}, env={}).policies_for("other"))


def test_rate_limit_is_replaced_whole() -> None:
    """A dependency's rate_limit replaces the default's; a table gives one RateLimit."""
    config = load_config(
        {
            "defaults": {"rate_limit": [{"rate": 1}, {"rate": 2}]},
            "dependencies": {"x": {"rate_limit": {"rate": 3}}, "y": {}},
        },
        env={},
    )

    assert RateLimit(3) == config.policies_for("x")["rate_limit"]
    assert (RateLimit(1), RateLimit(2)) == config.policies_for("y")["rate_limit"]


def test_every_field_of_every_policy_is_a_key() -> None:
    """Fields come from attrs.fields(): each one is accepted and judged at its own path."""
    for key, cls in config_module._POLICIES.items():
        for field in attrs.fields(cls):
            if (key, field.alias) == ("chaos", "result"):
                continue  # any value is a substitute result, "???" too
            path = f"dependencies.x.{key}.{field.alias}"
            found = problems(dep(**{key: {field.alias: "???"}}))
            assert path in [p for p, _ in found], (path, found)


@attrs.frozen(kw_only=True)
class _Budget:
    ratio: float = attrs.field(default=0.2, validator=number(ge=0))
    window: float = attrs.field(default=10.0, validator=number(gt=0))


@attrs.frozen(kw_only=True)
class _RetryWithBudget:
    attempts: int = 3
    budget: _Budget | None = attrs.field(factory=_Budget)


def test_a_new_nested_field_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A field added to a policy later (Retry.budget) is a key at once, a table structured."""
    monkeypatch.setitem(config_module._POLICIES, "retry", _RetryWithBudget)

    config = load_config(dep(retry={"budget": {"ratio": 0.1, "window": "1m"}}, breaker={}), env={})
    assert (
        _RetryWithBudget(budget=_Budget(ratio=0.1, window=60.0))
        == (config.policies_for("x")["retry"])
    )
    off = load_config(dep(retry={"budget": False}), env={}).policies_for("x")["retry"]
    assert _RetryWithBudget(budget=None) == off
    assert (
        ("dependencies.x.retry.budget.ratio", "must be a number >= 0, got -1"),
        ("dependencies.x.retry.budget.windw", "unknown field of _Budget, did you mean 'window'?"),
    ) == problems(dep(retry={"budget": {"ratio": -1, "windw": 1}}))


# ============================================================================ values


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), (".5s", 0.5), ("2.5 s", 2.5)],
)
def test_duration_strings(text: str, seconds: float) -> None:
    """Durations are numbers of seconds or strings with ms, s, m or h."""
    config = load_config(dep(timeout={"total": text}), env={})

    assert Timeout(total=seconds) == config.policies_for("x")["timeout"]


def test_bad_duration_strings() -> None:
    """A string that is no duration, or a duration where no seconds belong, is a problem."""
    assert (
        (
            "dependencies.x.timeout.total",
            "must be seconds: a number, or a string such as '250ms', '30s', '5m' or '1h',"
            " got '5 minutes'",
        ),
        (
            "dependencies.x.breaker.failure_ratio",
            "must be a number > 0 and <= 1, got '500ms' of type str",
        ),
    ) == problems(dep(timeout={"total": "5 minutes"}, breaker={"failure_ratio": "500ms"}))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"exponential": {"base": 0.2, "cap": 10}}, backoff.exponential(base=0.2, cap=10)),
        ({"exponential": {}}, backoff.exponential()),
        ("decorrelated", backoff.decorrelated()),
        ({"constant": "50ms"}, backoff.constant(0.05)),
        ({"linear": {"start": 1, "step": 2}}, backoff.linear(1, 2)),
        ({"full": {"exponential": {"base": 1}}}, backoff.full(backoff.exponential(base=1))),
        ({"full": "exponential"}, backoff.full(backoff.exponential())),
        ({"full": {"inner": {"constant": 1}}}, backoff.full(backoff.constant(1))),
        (
            {"proportional": {"ratio": 0.1, "linear": {"start": 1, "step": 1}}},
            backoff.proportional(backoff.linear(1, 1), ratio=0.1),
        ),
    ],
)
def test_backoff_schedules_by_name(raw: object, expected: object) -> None:
    """A backoff is named as its factory, its arguments a table, a wrapper's inner inside it."""
    config = load_config(dep(retry={"backoff": raw}), env={})

    assert expected == config.policies_for("x")["retry"].backoff  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (30, break_duration.constant(30)),
        ("1m", break_duration.constant(60)),
        ({"adaptive": {"start": 5}}, break_duration.adaptive(5)),
        ({"exponential": {"start": 1, "cap": "1h"}}, break_duration.exponential(1, cap=3600)),
        ({"constant": 7}, break_duration.constant(7)),
    ],
)
def test_break_durations_by_number_or_name(raw: object, expected: object) -> None:
    """break_duration is a number of seconds or a named schedule."""
    config = load_config(dep(breaker={"break_duration": raw}), env={})

    assert expected == config.policies_for("x")["breaker"].break_duration  # type: ignore[attr-defined]


def test_policy_warnings_carry_the_key_path() -> None:
    """What a policy warns about at construction is re-issued with its key path."""
    with pytest.warns(
        UserWarning,
        match=r"^dependencies\.x\.timeout: Timeout\(attempt=30, total=10\): the attempt limit",
    ):
        load_config(dep(timeout={"attempt": 30, "total": 10}), env={})


# ============================================================================ bad input


def test_four_mistakes_give_four_problems(tmp_path: Path) -> None:
    """Every problem is reported at once, in file order, each with its path and rule."""
    path = write(
        tmp_path,
        """
        [dependencies.llm.retry]
        atempts = 3
        backoff = { expo = { base = 0.2 } }

        [dependencies.llm.breaker]
        failure_ratio = 2

        [dependencies.llm]
        critical = "yes"
        """,
    )

    assert (
        ("dependencies.llm.retry.atempts", "unknown field of Retry, did you mean 'attempts'?"),
        (
            "dependencies.llm.retry.backoff",
            "unknown backoff schedule 'expo', did you mean 'exponential'?",
        ),
        ("dependencies.llm.breaker.failure_ratio", "must be a number > 0 and <= 1, got 2"),
        ("dependencies.llm.critical", "must be true or false, got 'yes' of type str"),
    ) == problems(path)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"dependency": {}}, ("dependency", "unknown key, did you mean 'dependencies'?")),
        ({"x": {}}, ("x", "unknown key; expected one of: defaults, dependencies")),
        (
            {"defaults": {"retyr": {}}},
            ("defaults.retyr", "unknown policy, did you mean 'retry'?"),
        ),
        (
            dep(fallback={}),
            (
                "dependencies.x.fallback",
                "unknown policy; expected one of: retry, breaker, timeout, bulkhead,"
                " rate_limit, hedge, chaos, critical",
            ),
        ),
        (
            dep(timeout={"deadline": 1}),
            (
                "dependencies.x.timeout.deadline",
                "unknown field of Timeout; expected one of: attempt, total, first_item, between_items",
            ),
        ),
        (
            {"dependencies": {"api.v2": {"timeout": {"totl": 1}}}},
            (
                'dependencies."api.v2".timeout.totl',
                "unknown field of Timeout, did you mean 'total'?",
            ),
        ),
    ],
)
def test_unknown_keys_with_suggestions(source: object, expected: tuple[str, str]) -> None:
    """Unknown keys name their path and suggest the closest known key, or list them all."""
    assert (expected,) == problems(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"dependencies": 3},
            ("dependencies", "must be a table of [dependencies.<name>] tables, got 3 of type int"),
        ),
        (
            {"dependencies": {"x": 3}},
            (
                "dependencies.x",
                "must be a [dependencies.<name>] table of policies, got 3 of type int",
            ),
        ),
        (
            dep(retry=3),
            (
                "dependencies.x.retry",
                "must be a table of Retry fields, or false for none, got 3 of type int",
            ),
        ),
        (
            dep(rate_limit="5/s"),
            (
                "dependencies.x.rate_limit",
                "must be a table or an array of tables of RateLimit fields, or false for none,"
                " got '5/s' of type str",
            ),
        ),
        (
            dep(retry={"attempts": 2.5}),
            ("dependencies.x.retry.attempts", "must be an int >= 1, got 2.5 of type float"),
        ),
        (
            dep(retry={"attempts": True}),
            ("dependencies.x.retry.attempts", "must be an int >= 1, got True of type bool"),
        ),
        (
            dep(bulkhead={"max_concurrent": 0}),
            ("dependencies.x.bulkhead.max_concurrent", "must be an int >= 1, got 0"),
        ),
        (
            dep(rate_limit=[]),
            ("dependencies.x.rate_limit", "must hold at least one limit, or be false for none"),
        ),
        (
            dep(rate_limit=[{"rate": 1}, {"rate": -1}]),
            ("dependencies.x.rate_limit[1].rate", "must be a number > 0, got -1"),
        ),
        (
            dep(bulkhead={"max_queued": 1}),
            ("dependencies.x.bulkhead.max_concurrent", "missing: Bulkhead has no default for it"),
        ),
        (
            {"defaults": {"bulkhead": {}}},
            (
                "defaults.bulkhead.max_concurrent",
                "missing: Bulkhead has no default for it (a [defaults] policy must be"
                " complete: dependencies the file does not list get it as it is)",
            ),
        ),
        (
            dep(breaker={"failure_threshold": 3, "failure_ratio": 0.5}),
            (
                "dependencies.x.breaker",
                "give either 'failure_threshold' (consecutive failures) or 'failure_ratio'"
                " (ratio over a window), not both: got failure_threshold=3 and"
                " failure_ratio=0.5",
            ),
        ),
        (
            {"dependencies": {"": {}}},
            ('dependencies.""', "a dependency name must not be empty"),
        ),
    ],
)
def test_wrong_types_and_values(source: object, expected: tuple[str, str]) -> None:
    """Wrong shapes and types, values out of range and cross-field rules, each at its path."""
    assert (expected,) == problems(source)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"expo": {}},
            ("", "unknown backoff schedule 'expo', did you mean 'exponential'?"),
        ),
        (
            "jitter",
            (
                "",
                "unknown backoff schedule 'jitter'; expected one of: constant, linear,"
                " exponential, full, proportional, decorrelated",
            ),
        ),
        (
            {"constant": 1, "linear": {}},
            (
                "",
                "must name exactly one backoff schedule, such as { constant = { ... } };"
                " got 2 keys: constant, linear",
            ),
        ),
        (
            {"exponential": {"bse": 1}},
            (".exponential.bse", "unknown argument of backoff.exponential, did you mean 'base'?"),
        ),
        ({"linear": {"start": 1}}, (".linear", "missing argument 'step'")),
        ({"exponential": {"base": -1}}, (".exponential.base", "must be a number >= 0, got -1")),
        ({"full": {}}, (".full", "missing argument 'inner'")),
        (
            {"full": {"expo": {}}},
            (".full.expo", "unknown argument of backoff.full, did you mean 'exponential'?"),
        ),
        (
            {"full": {"linear": {"step": 1}}},
            (".full.linear", "missing argument 'start'"),
        ),
    ],
)
def test_bad_schedules(raw: object, expected: tuple[str, str]) -> None:
    """Unknown schedule names list the known ones; arguments are checked like fields."""
    suffix, message = expected

    assert ((f"dependencies.x.retry.backoff{suffix}", message),) == problems(
        dep(retry={"backoff": raw})
    )


def test_unknown_error_kinds() -> None:
    """Kinds are the only selectors a file can give; an exception's name says so."""
    assert (
        (
            "dependencies.x.retry.retry_on[1]",
            f"unknown error kind 'ConnectionError'; expected one of: {KINDS} (exception types"
            " and predicates cannot come from a file: pass retry_on=... to register() in code)",
        ),
        (
            "dependencies.x.breaker.record[0]",
            "unknown error kind 'transent', did you mean 'transient'?",
        ),
    ) == problems(
        dep(retry={"retry_on": ["transient", "ConnectionError"]}, breaker={"record": ["transent"]})
    )


def test_non_utf8_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with the offset of the first bad byte."""
    path = write(tmp_path, b"[defaults]\n# caf\xe9\n")

    assert ((str(path), "is not UTF-8: byte 0xe9 at offset 16"),) == problems(path)


def test_a_bom_is_allowed(tmp_path: Path) -> None:
    """A UTF-8 byte order mark (Windows editors write one) is not an error."""
    path = write(tmp_path, b"\xef\xbb\xbf[dependencies.x]\ncritical = true\n")

    assert {"critical": True} == load_config(path, env={}).policies_for("x")


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    """tomllib's complaint, with its line and column, is the one problem."""
    path = write(tmp_path, "[defaults]\nretry = {\n")

    ((where, message),) = problems(path)
    assert str(path) == where
    assert re.fullmatch(r"invalid TOML: .+ \(at line 2, column 10\)", message), message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing file or a directory is a clear problem, not an OSError."""
    assert ((str(tmp_path / "nope.toml"), "no such file"),) == problems(tmp_path / "nope.toml")
    assert ((str(tmp_path), "is a directory, not a TOML file"),) == problems(tmp_path)


def test_mapping_keys_must_be_strings() -> None:
    """A mapping built in code is checked like a parsed file."""
    assert (("dependencies", "keys must be strings, got 1 of type int"),) == problems(
        {"dependencies": {1: {}}}
    )


def test_config_error_lists_every_problem() -> None:
    """ConfigError is a ValueError whose message lists each problem on its own line."""
    error = ConfigError([("a.b", "must be x"), ("c", "unknown key")], source="f.toml")

    assert isinstance(error, ValueError)
    assert "f.toml: 2 configuration problems\n  a.b: must be x\n  c: unknown key" == str(error)
    assert "f.toml: 1 configuration problem\n  a: b" == str(
        ConfigError([("a", "b")], source="f.toml")
    )


# ============================================================================ environment


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", Retry(attempts=5)),
        ("0.5", Retry(max_retry_after=0.5)),
        ("30s", Retry(max_retry_after=30)),
        ('"30s"', Retry(max_retry_after=30)),
        ("{ constant = 0.1 }", Retry(backoff=backoff.constant(0.1))),
        ('["auth"]', Retry(retry_on=(ErrorKind.AUTH,))),
        ("transient, auth", Retry(retry_on=(ErrorKind.TRANSIENT, ErrorKind.AUTH))),
    ],
    ids=["int", "float", "bare-duration", "toml-string", "schedule", "array", "comma-list"],
)
def test_env_values_are_toml_or_bare_strings(value: str, expected: Retry) -> None:
    """An environment value is read as a TOML value, else taken as a bare string."""
    field = {
        "5": "ATTEMPTS",
        "0.5": "MAX_RETRY_AFTER",
        "30s": "MAX_RETRY_AFTER",
        '"30s"': "MAX_RETRY_AFTER",
        "{ constant = 0.1 }": "BACKOFF",
    }.get(value, "RETRY_ON")
    config = load_config(dep(retry={}), env={f"RINGFENCE_X__RETRY__{field}": value})

    assert expected == config.policies_for("x")["retry"]
    assert (f"RINGFENCE_X__RETRY__{field}",) == config.overrides


def test_env_reaches_defaults_flags_whole_tables_and_deep_keys() -> None:
    """DEFAULTS, a flag, a whole policy and a key inside a schedule can all be set."""
    config = load_config(
        dep(retry={"backoff": {"exponential": {"base": 1}}}),
        env={
            "RINGFENCE_DEFAULTS__TIMEOUT__TOTAL": "20s",
            "RINGFENCE_X__CRITICAL": "true",
            "RINGFENCE_X__BULKHEAD": "{ max_concurrent = 2 }",
            "RINGFENCE_X__BULKHEAD__MAX_QUEUED": "4",
            "RINGFENCE_X__RETRY__BACKOFF__EXPONENTIAL__CAP": "3",
            "PATH": "/bin",
        },
    )

    assert {
        "retry": Retry(backoff=backoff.exponential(base=1, cap=3)),
        "timeout": Timeout(total=20),
        "bulkhead": Bulkhead(max_concurrent=2, max_queued=4),
        "critical": True,
    } == config.policies_for("x")


def test_env_names_match_case_and_punctuation_insensitively() -> None:
    """llm-eu is LLM_EU, llm is llm; a__b's variables are not taken for a's."""
    source: dict[str, object] = {"dependencies": {"llm": {}, "llm-eu": {}, "a": {}, "a__b": {}}}
    config = load_config(
        source, env={"RINGFENCE_LLM_EU__TIMEOUT__TOTAL": "1", "RINGFENCE_llm__critical": "true"}
    )

    assert {"timeout": Timeout(total=1)} == config.policies_for("llm-eu")
    assert {"critical": True} == config.policies_for("llm")
    config = load_config(source, env={"RINGFENCE_A__B__CRITICAL": "true"})
    assert ({}, {"critical": True}) == (config.policies_for("a"), config.policies_for("a__b"))


def test_env_mistakes_are_listed_with_the_file_problems() -> None:
    """Variables that match nothing come first, by name; a value set from one names it."""
    source = {"dependencies": {"llm": {"timeout": {"total": -1}}, "a.b": {}, "a-b": {}}}
    env = {
        "RINGFENCE_LMM__RETRY__ATTEMPTS": "3",
        "RINGFENCE_LLM__RETRI__ATTEMPTS": "3",
        "RINGFENCE_LLM__RETRY__ATEMPTS": "3",
        "RINGFENCE_LLM__CRITICAL__X": "3",
        "RINGFENCE_LLM": "3",
        "RINGFENCE_A_B__CRITICAL": "true",
        "RINGFENCE_LLM__RETRY__ATTEMPTS": "0",
    }

    assert (
        (
            "RINGFENCE_A_B__CRITICAL",
            'A_B matches dependencies."a.b" and dependencies.a-b; rename one of them in the file',
        ),
        ("RINGFENCE_LLM", "names no policy; use RINGFENCE_<NAME>__<POLICY>[__<FIELD>]"),
        ("RINGFENCE_LLM__CRITICAL__X", "'critical' is a flag, it has no fields"),
        ("RINGFENCE_LLM__RETRI__ATTEMPTS", "unknown policy 'retri', did you mean 'retry'?"),
        (
            "RINGFENCE_LLM__RETRY__ATEMPTS",
            "unknown field 'atempts' of Retry, did you mean 'attempts'?",
        ),
        (
            "RINGFENCE_LMM__RETRY__ATTEMPTS",
            "no dependency 'LMM' in the file, did you mean 'llm'? (configure only dependencies"
            " the file lists, or DEFAULTS)",
        ),
        ("dependencies.llm.timeout.total", "must be a number > 0, got -1"),
        (
            "dependencies.llm.retry.attempts",
            "must be an int >= 1, got 0 (from RINGFENCE_LLM__RETRY__ATTEMPTS)",
        ),
    ) == problems(source, env)


def test_env_cannot_reach_into_an_array_but_can_replace_it() -> None:
    """rate_limit as an array is set whole from the environment, never one item's field."""
    source = dep(rate_limit=[{"rate": 1}, {"rate": 2}])

    assert (
        (
            "RINGFENCE_X__RATE_LIMIT__RATE",
            "dependencies.x.rate_limit is an array in the file; set it whole with"
            " RINGFENCE_X__RATE_LIMIT",
        ),
    ) == problems(source, {"RINGFENCE_X__RATE_LIMIT__RATE": "5"})
    config = load_config(source, env={"RINGFENCE_X__RATE_LIMIT": "[{ rate = 5 }]"})
    assert (RateLimit(5),) == config.policies_for("x")["rate_limit"]


def test_env_text_that_is_not_one_toml_value_stays_a_string() -> None:
    """A value holding a newline and a second key is a string, not two settings."""
    assert (
        (
            "dependencies.x.retry.attempts",
            "must be an int >= 1, got '1\\nx = 2' of type str (from RINGFENCE_X__RETRY__ATTEMPTS)",
        ),
    ) == problems(dep(), {"RINGFENCE_X__RETRY__ATTEMPTS": "1\nx = 2"})


def test_env_defaults_to_os_environ_and_leaves_the_source_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """env=None reads os.environ; a mapping source is never written to."""
    monkeypatch.setenv("RINGFENCE_X__RETRY__ATTEMPTS", "7")
    source = dep()

    config = load_config(source)

    assert Retry(attempts=7) == config.policies_for("x")["retry"]
    assert dep() == source


# ============================================================================ printing and CLI


def test_describe_prints_effective_policies() -> None:
    """describe() shows every dependency's effective policies, with their reprs."""
    config = load_config(
        {"defaults": {"timeout": {"total": 5}}, "dependencies": {"db": {"critical": True}}},
        env={"RINGFENCE_DB__BULKHEAD__MAX_CONCURRENT": "2"},
    )

    assert (
        "# ringfence configuration from <mapping>\n"
        "# environment overrides: RINGFENCE_DB__BULKHEAD__MAX_CONCURRENT\n"
        "\n"
        "[defaults]\n"
        "timeout = Timeout(attempt=None, total=5, first_item=None, between_items=None)\n"
        "\n"
        "[dependencies.db]\n"
        "timeout = Timeout(attempt=None, total=5, first_item=None, between_items=None)\n"
        "bulkhead = Bulkhead(max_concurrent=2, max_queued=0)\n"
        "critical = True\n"
    ) == config.describe()
    assert "[defaults]\n# no policies: calls pass straight through\n" in Config().describe()


@pytest.fixture
def no_ringfence_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ: keep the caller's RINGFENCE_* variables out of these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("RINGFENCE_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_ringfence_env")
def test_cli_prints_the_effective_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    """`ringfence config FILE` prints what load_config() gives, as TOML, and exits 0."""
    assert 0 == main(["config", str(EXAMPLE)])

    out, err = capsys.readouterr()
    assert effective_toml(load_config(EXAMPLE, env={})) == out
    assert "" == err


@pytest.mark.usefixtures("no_ringfence_env")
def test_cli_prints_every_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file: every problem on stderr, argparse's exit status 2, nothing on stdout."""
    path = write(tmp_path, "[dependencies.x]\ncritical = 1\n[dependencies.x.timeout]\ntotal = 0\n")

    assert 2 == main(["config", str(path)])

    out, err = capsys.readouterr()
    assert "" == out
    assert (
        f"ringfence config: error: {path}: 2 configuration problems\n"
        "  dependencies.x.critical: must be true or false, got 1 of type int\n"
        "  dependencies.x.timeout.total: must be a number > 0, got 0\n"
    ) == err


@pytest.mark.usefixtures("no_ringfence_env")
def test_cli_reports_warnings_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings go to stderr beside a successful print; a missing file exits 2; env counts."""
    path = write(tmp_path, "[dependencies.x.timeout]\nattempt = 3\ntotal = 2\n")

    assert 0 == main(["config", str(path)])
    out, err = capsys.readouterr()
    assert err.startswith(
        "ringfence config: warning: dependencies.x.timeout: Timeout(attempt=3, total=2): "
    )
    assert "[dependencies.x.timeout]\nattempt = 3\ntotal = 2\nfirst_item = false\n" in out

    monkeypatch.setenv("RINGFENCE_Y__CRITICAL", "true")
    assert 2 == main(["config", str(path)])
    assert (
        f"ringfence config: error: {path}: 1 configuration problem\n"
        "  RINGFENCE_Y__CRITICAL: no dependency 'Y' in the file (configure only dependencies"
        " the file lists, or DEFAULTS)\n"
    ) == capsys.readouterr().err


def test_a_conflict_in_the_defaults_is_reported_once() -> None:
    """A cross-field conflict in [defaults] is its problem alone, not every dependency's."""
    source = {
        "defaults": {"breaker": {"failure_threshold": 3, "failure_ratio": 0.5}},
        "dependencies": {"x": {"breaker": {"half_open_probes": 2}}, "y": {}},
    }

    assert (
        (
            "defaults.breaker",
            "give either 'failure_threshold' (consecutive failures) or 'failure_ratio'"
            " (ratio over a window), not both: got failure_threshold=3 and failure_ratio=0.5",
        ),
    ) == problems(source)


def test_unknown_break_duration_lists_only_its_schedules() -> None:
    """The known names are the module's factories: as_break_duration is not a schedule."""
    assert (
        (
            "dependencies.x.breaker.break_duration",
            "unknown break_duration schedule 'forever'; expected one of: constant, linear,"
            " exponential, adaptive",
        ),
    ) == problems(dep(breaker={"break_duration": "forever"}))


def test_env_name_must_match_a_whole_dependency_name() -> None:
    """RINGFENCE_LLMX__... is not llm's: a name ends at the double underscore."""
    assert (
        (
            "RINGFENCE_LLMX__CRITICAL",
            "no dependency 'LLMX' in the file, did you mean 'llm'? (configure only"
            " dependencies the file lists, or DEFAULTS)",
        ),
    ) == problems({"dependencies": {"llm": {}}}, {"RINGFENCE_LLMX__CRITICAL": "true"})


def test_every_bad_value_of_one_table_is_reported() -> None:
    """A policy raises only its first error; each field is checked alone, so all three show."""
    assert (
        ("dependencies.x.breaker.failure_ratio", "must be a number > 0 and <= 1, got 2"),
        ("dependencies.x.breaker.half_open_probes", "must be an int >= 1, got 0"),
        ("dependencies.x.breaker.slow_call", "must be a number > 0, got -1"),
    ) == problems(dep(breaker={"failure_ratio": 2, "half_open_probes": 0, "slow_call": -1}))


# ============================================================================ deep nesting
# Issue 16, item 3, defect 8: a value nested thousands of levels deep (in the file, an
# environment variable's name or value, or a mapping) raised RecursionError, and the CLI
# exited 1 with a traceback.

DEEP = 2000  # levels: past Python's recursion limit, and tomllib's
TOO_DEEP = "nested too deeply: a key path holds at most 32 keys"


def test_a_deep_key_path_in_the_file_is_a_problem_at_that_path(tmp_path: Path) -> None:
    """Dotted keys nest without limit in TOML: the path is cut at its 33rd key."""
    keys = ".".join(["full"] * DEEP)
    path = write(tmp_path, f"[dependencies.llm.retry]\nbackoff.{keys}.exponential.base = 1\n")

    deep = "dependencies.llm.retry.backoff." + ".".join(["full"] * 29)
    assert ((deep, TOO_DEEP),) == problems(path)


def test_a_deep_toml_value_is_a_problem_of_the_file_with_its_line(tmp_path: Path) -> None:
    """Inline tables too deep for tomllib: the file's problem, naming the line."""
    value = "{ full = " * DEEP + "{ exponential = {} }" + " }" * DEEP
    path = write(
        tmp_path,
        f"[dependencies.llm]\ncritical = true\n[dependencies.llm.retry]\nbackoff = {value}\n",
    )

    assert (
        (str(path), "invalid TOML: arrays or inline tables nested too deeply to read (line 4)"),
    ) == problems(path)


def test_deep_environment_names_and_values_are_problems_of_the_variable() -> None:
    """A variable naming a path too long, or whose value nests too deep: each one problem,
    named by the variable; a value deep but readable is cut at its 33rd key."""
    name = "RINGFENCE_X__RETRY__BACKOFF__" + "FULL__" * DEEP + "EXPONENTIAL__BASE"
    unreadable = "RINGFENCE_X__RETRY__RETRY_ON"
    readable = "RINGFENCE_X__BREAKER__BREAK_DURATION"

    assert (
        (name, f"{TOO_DEEP}, this variable names {DEEP + 6}"),
        (unreadable, "its value has arrays or inline tables nested too deeply to read"),
        ("dependencies.x.breaker.break_duration" + "[0]" * 29, f"{TOO_DEEP} (from {readable})"),
    ) == problems(
        dep(),
        {
            name: "1",
            unreadable: "[" * DEEP + "]" * DEEP,
            readable: "[" * 40 + "]" * 40,
        },
    )


def test_a_deep_or_cyclic_mapping_is_a_problem_at_its_path() -> None:
    """A mapping built in code, too deep or holding itself, is cut at its 33rd key."""
    deep: dict[str, object] = {}
    node = deep
    for _ in range(DEEP):
        node["full"] = node = {}
    cyclic: dict[str, object] = {}
    cyclic["full"] = cyclic

    for backoff_value in (deep, cyclic):
        deep_path = "dependencies.x.retry.backoff." + ".".join(["full"] * 29)
        assert ((deep_path, TOO_DEEP),) == problems(dep(retry={"backoff": backoff_value}))


def test_nesting_below_the_limit_still_loads() -> None:
    """20 jitter wrappers around a schedule: 25 keys deep, a valid configuration."""
    value: dict[str, object] = {"exponential": {"base": 0.5}}
    expected = backoff.exponential(base=0.5)
    for _ in range(20):
        value = {"full": value}
        expected = backoff.full(expected)

    config = load_config(dep(retry={"backoff": value}), env={})

    assert Retry(backoff=expected) == config.policies_for("x")["retry"]


@pytest.mark.usefixtures("no_ringfence_env")
def test_cli_reports_deep_nesting_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ringfence config FILE` on a file nested too deeply: the problem, exit 2, no traceback."""
    keys = ".".join(["full"] * DEEP)
    path = write(tmp_path, f"[dependencies.llm.retry]\nbackoff.{keys}.exponential.base = 1\n")

    assert 2 == main(["config", str(path)])

    out, err = capsys.readouterr()
    deep = "dependencies.llm.retry.backoff." + ".".join(["full"] * 29)
    assert (
        "",
        f"ringfence config: error: {path}: 1 configuration problem\n  {deep}: {TOO_DEEP}\n",
    ) == (out, err)


def test_cli_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """The same through `python -m supervisor config`, for both kinds of deep file."""
    import os
    import subprocess
    import sys

    value = "[" * DEEP + "]" * DEEP
    keys = ".".join(["full"] * DEEP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    for text in (
        f"[defaults.retry]\nretry_on = {value}\n",
        f"[defaults.retry]\nbackoff.{keys} = 1\n",
    ):
        path = write(tmp_path, text)
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert 2 == done.returncode, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(f"ringfence config: error: {path}: 1 configuration problem\n")
