"""
The script protocol (``_protocol.py``) on hand-made inputs: the arguments each script is given,
the replies decoded, what a refused script means, the heartbeat's summary and the shared
verdict's settings. No Redis, no event loop.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from policies import Breaker, BreakHistory, RateLimit
from supervisor.integrations.redis import _protocol
from supervisor.integrations.redis._keys import FORMAT
from supervisor.integrations.redis._protocol import (
    MalformedReply,
    _expected_type,
    _leaf,
    _problem,
    _reason,
    _redact,
    _text,
    _verdict_settings,
    control_args,
    decode_dependency,
    decode_heartbeat,
    decode_lease,
    dependency_args,
    disagreement,
    garbage_problem,
    heartbeat_args,
    lease_args,
    parse_verdict,
    pause_args,
    pause_ms,
    pause_origin,
    script_head,
    summary,
    verdict_delay,
    verdict_fields,
)

NO_OVERRIDES: dict[str, Any] = {
    "open_ratio": None,
    "open_min_volume": None,
    "open_for": None,
    "window": None,
}


def test_the_protocol_does_no_io() -> None:
    """Sans-I/O: it imports neither coredis nor anyio, and nothing in it awaits."""
    tree = ast.parse(Path(_protocol.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "json", "math", "re", "sys", "collections", "typing"} | {
        "policies"
    }
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Await | ast.AsyncFunctionDef)]


# -- text ---------------------------------------------------------------------------------------


def test_text_decodes_bytes_and_reads_nil_as_none() -> None:
    assert [None, None, "a", "é", "3"] == [
        _text(None),
        _text(False),
        _text(b"a"),
        _text("é".encode()),
        _text(3),
    ]


def test_a_url_is_redacted_of_its_password_only() -> None:
    assert "redis://h:6379/0" == _redact("redis://h:6379/0")
    assert "redis://u:***@h:6379/0" == _redact("redis://u:secret@h:6379/0")
    assert "redis://:***@h" == _redact("redis://:secret@h")
    assert "redis://u@h" == _redact("redis://u@h")  # a user name is no secret


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://h/0?password=secret", "redis://h/0?password=***"),
        ("redis://h/0?db=1&password=secret&x=1", "redis://h/0?db=1&password=***&x=1"),
        ("redis://h/0?Password=secret#f", "redis://h/0?Password=***#f"),
        ("redis://h?auth_token=secret;pwd=secret", "redis://h?auth_token=***;pwd=***"),
        ("unix://u:secret@/run/r.sock?password=secret", "unix://u:***@/run/r.sock?password=***"),
        ("rediss+cluster://u:sec@ret@h:1/0", "rediss+cluster://u:***@h:1/0"),
        ("rediss://h/0?ssl_keyfile=/k.pem", "rediss://h/0?ssl_keyfile=/k.pem"),  # a path
        ("redis://[::1:secret", "redis://[::1:secret"),  # no user information: nothing to hide
        ("not a url ?password=secret", "not a url ?password=***"),
    ],
)
def test_every_form_of_a_secret_in_a_url_is_redacted(url: str, redacted: str) -> None:
    assert redacted == _redact(url)


def test_the_reason_is_the_first_leaf_of_a_group() -> None:
    group = ExceptionGroup("pool", [ExceptionGroup("inner", [OSError("refused")]), KeyError()])
    assert isinstance(_leaf(group), OSError)
    assert "OSError: refused" == _reason(group)
    assert "TimeoutError" == _reason(TimeoutError())


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [
        ("meta", "hash"),
        ("summaries", "hash"),
        ("replicas", "zset"),
        ("dep:llm:health", "hash"),
        ("dep:llm:open", "string"),
        ("dep:llm:pause", "string"),
        ("dep:llm:control", "hash"),
        ("dep:llm:state", "hash"),
        ("dep:llm:other", None),
        ("limit:llm:0", "hash"),
        ("limit:llm:x", None),
        ("cache", None),
    ],
)
def test_the_expected_type_of_each_key(suffix: str, kind: str | None) -> None:
    assert kind == _expected_type(suffix)


# -- what a refused script means ----------------------------------------------------------------


def problem(text: str, *, wrong_type: bool = False) -> dict[str, str]:
    problems: dict[str, str] = {}
    _problem(
        problems,
        "dependency:llm",
        "dependency 'llm'",
        text,
        wrong_type=wrong_type,
        namespace="svc",
        base="ringfence:{svc}",
    )
    return problems


def test_another_format_is_said_for_the_namespace() -> None:
    assert {
        "format": "namespace 'svc' is used by another ringfence version (2 here, 3 stored);"
        " use another namespace"
    } == problem("ResponseError: RINGFENCE_FORMAT 2 here, 3 stored")


def test_a_late_script_did_nothing() -> None:
    assert {
        "late": "Redis ran ringfence's scripts after their deadline (a stalled or overloaded"
        " server); they did nothing"
    } == problem("ResponseError: RINGFENCE_LATE")


def test_no_time_is_a_clock_problem_in_the_scripts_words() -> None:
    assert {"clock": "TIME refused"} == problem("ResponseError: RINGFENCE_NOTIME TIME refused")


@pytest.mark.parametrize(
    ("text", "wrong_type"), [("ResponseError: WRONGTYPE Operation", False), ("WrongType", True)]
)
def test_a_wrong_type_names_the_prefix(text: str, wrong_type: bool) -> None:
    assert {
        "dependency:llm": "dependency 'llm': a key under ringfence:{svc}: holds another"
        f" application's data ({text}); use another namespace or delete those keys"
    } == problem(text, wrong_type=wrong_type)


def test_any_other_refusal_is_said_for_its_scope() -> None:
    assert {
        "dependency:llm": "dependency 'llm': Redis refused ringfence's script (ResponseError: no)"
    } == problem("ResponseError: no")


# -- every script -------------------------------------------------------------------------------


def test_the_head_has_no_deadline_before_the_first_answer() -> None:
    assert ["auto", "1000.5", FORMAT, "0.0"] == script_head("auto", 1000.5, None, 0.25)


def test_the_head_deadline_is_on_the_scripts_clock_with_slack() -> None:
    head = script_head("client", 1000.0, 500.0, 0.25)
    assert ["client", "1000.0", FORMAT, repr(1000.0 + 500.0 + 250.0 + 50.0)] == head


# -- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat_arguments() -> None:
    assert ["r1", 3000, "{}", 1, 1000] == heartbeat_args(
        "r1", 3000, "{}", detail=True, tolerance_ms=1000
    )
    assert 0 == heartbeat_args("r1", 3000, "{}", detail=False, tolerance_ms=1000)[3]


def test_a_heartbeat_reply_decodes_and_skips_bad_summaries() -> None:
    reply = [
        b"server",
        b"1700000000000.5",
        0,
        b"-12.5",
        b"2.5",
        b"40",
        b"r1",
        json.dumps({"id": "r1"}).encode(),
        b"r2",
        b"{not json",
        None,
        b"{}",
        b"dangling",
    ]
    decoded = decode_heartbeat(reply, detail=True)
    assert "server" == decoded.clock
    assert 1700000000000.5 == decoded.time_ms
    assert 1 == decoded.replicas  # never fewer than this one
    assert (-12.5, 2.5, 40.0) == (decoded.offset_ms, decoded.median_ms, decoded.spread_ms)
    assert {"r1": {"id": "r1"}, "?": {}} == decoded.summaries


def test_a_heartbeat_reply_without_detail_or_clock_figures() -> None:
    """Not asked: no summaries (None, not empty); Redis's time unknown: no clock figures."""
    decoded = decode_heartbeat([b"client", b"1000", 3, None, None, None], detail=False)
    assert (3, None, None, None, None) == (
        decoded.replicas,
        decoded.offset_ms,
        decoded.median_ms,
        decoded.spread_ms,
        decoded.summaries,
    )


def status(**fields: Any) -> Any:
    base = {
        "state": "closed",
        "calls": 10,
        "failures": 2,
        "rejected": 1,
        "in_flight": 3,
        "queued": 0,
        "pause_remaining": 0.0,
        "shared_open_until": None,
    }
    return types.SimpleNamespace(**(base | fields))


def test_the_summary_of_a_replica() -> None:
    made = summary(
        replica_id="r1",
        host="h",
        pid=7,
        wall=123.0,
        now=50.0,
        degraded=None,
        statuses={
            "llm": status(pause_remaining=2.0, shared_open_until=60.0),
            "db": status(shared_open_until=40.0),
        },
        windows={"llm": (4, 1)},
        limits=[("db", 0, "local", 0.0), ("llm", 0, "lease", 1.23456), ("llm", 1, "connecting", 0)],
    )
    assert {"id": "r1", "host": "h", "pid": 7, "wall": 123.0, "degraded": None} == {
        key: value for key, value in made.items() if key != "dependencies"
    }
    assert {
        "state": "closed",
        "calls": 10,
        "failures": 2,
        "rejected": 1,
        "in_flight": 3,
        "queued": 0,
        "paused": True,
        "shared_open": True,
        "window": [4, 1],
        "limits": [
            {"index": 0, "mode": "lease", "leased": 1.235},
            {"index": 1, "mode": "connecting", "leased": 0},
        ],
    } == made["dependencies"]["llm"]
    db = made["dependencies"]["db"]
    assert (False, False, [0, 0]) == (db["paused"], db["shared_open"], db["window"])
    assert [{"index": 0, "mode": "local", "leased": 0.0}] == db["limits"]
    json.dumps(made)  # JSON-ready


# -- one dependency -----------------------------------------------------------------------------


def test_no_breaker_and_the_never_breaker_share_no_verdict() -> None:
    never = Breaker(failure_threshold=sys.maxsize)
    assert (0.0, 1, 1.0, 30.0) == _verdict_settings(None, **NO_OVERRIDES)
    assert (0.0, 1, 1.0, 30.0) == _verdict_settings(never, **NO_OVERRIDES)
    assert (0.0, 1, 1.0, 12.0) == _verdict_settings(never, **NO_OVERRIDES | {"window": 12.0})


def test_a_ratio_breaker_gives_its_ratio_volume_sampling_and_first_break() -> None:
    breaker = Breaker(failure_ratio=0.3, min_throughput=20, sampling=10, break_duration=7)
    assert (0.3, 20, 7.0, 10.0) == _verdict_settings(breaker, **NO_OVERRIDES)
    plain = Breaker(failure_ratio=0.3)
    assert (0.3, 10, 30.0, 30.0) == _verdict_settings(plain, **NO_OVERRIDES)


def test_a_consecutive_breaker_gives_half_and_twice_its_threshold() -> None:
    assert (0.5, 8, 30.0, 30.0) == _verdict_settings(Breaker(failure_threshold=4), **NO_OVERRIDES)
    assert (0.5, 10, 30.0, 30.0) == _verdict_settings(Breaker(), **NO_OVERRIDES)


def test_the_settings_override_the_breaker() -> None:
    overrides = {"open_ratio": 0.9, "open_min_volume": 3, "open_for": 0.0, "window": 5.0}
    assert (0.9, 3, 0.001, 5.0) == _verdict_settings(Breaker(failure_ratio=0.3), **overrides)


def test_a_break_duration_that_needs_more_than_openings_is_plain() -> None:
    def picky(history: BreakHistory) -> float:
        assert history.previous is not None
        return history.previous * 2

    assert 30.0 == _verdict_settings(Breaker(break_duration=picky), **NO_OVERRIDES)[2]


def test_dependency_arguments() -> None:
    args = dependency_args("r1", (12, 5), 3, (0.25, 10, 1.5, 30.0), 2)
    assert ["r1", 12, 5, 3, "0.25", 10, 2, 1500, 30000] == args


def test_a_dependency_reply_decodes() -> None:
    reply = [
        b"server",
        b"x",
        b"4",
        40,
        10,
        3,
        2,
        b"7 1700000000000 r2 40 10",
        1500,
        b"r2 0badcafe 9",
        200,
        b"5",
        b"isolate",
        b"maintenance",
        b"r3",
    ]
    decoded = decode_dependency(reply)
    assert ("server", 4, 40, 10, 3, 2) == decoded[:6]
    assert ("7 1700000000000 r2 40 10", 1500) == (decoded.verdict, decoded.verdict_ttl)
    assert ("r2 0badcafe 9", 200) == (decoded.pause, decoded.pause_ttl)
    assert ("5", "isolate", "maintenance", "r3") == decoded.command
    assert {
        "calls": 40,
        "failures": 10,
        "failure_ratio": 0.25,
        "reporting": 3,
        "failing": 2,
        "epoch": 4,
        "control": None,
    } == decoded.aggregate()


def test_a_quiet_dependency_reply_decodes() -> None:
    reply = [b"client", 0, 0, 0, 0, 0, 0, None, -2, None, -2, None, None, None, None]
    decoded = decode_dependency(reply)
    assert (None, -2, None, -2) == (
        decoded.verdict,
        decoded.verdict_ttl,
        decoded.pause,
        decoded.pause_ttl,
    )
    assert (None, None, None, None) == decoded.command
    assert 0.0 == decoded.aggregate()["failure_ratio"]


def test_a_verdict_says_when_and_by_whom() -> None:
    verdict = "7 1700000000000 r2 40 10"
    assert 1.5 == pytest.approx(verdict_delay(verdict, 1700000001.5))
    assert verdict_delay("7", 1.0) is None
    assert verdict_delay("7 soon", 1.0) is None
    assert ("r2", 40, 10) == verdict_fields(verdict)
    assert (None, None, None) == verdict_fields("7 1700000000000")


def _reply(**changes: Any) -> list[Any]:
    """A dependency reply with a verdict, a pause and a command, *changes* by index name."""
    reply: list[Any] = [b"server", b"x", 4, 40, 10, 3, 2, b"7 1700000000000 r2 40 10", 1500]
    reply += [b"r2 0badcafe 9", 200, b"5", b"isolate", b"maintenance", b"r3"]
    names = {"verdict": 7, "verdict_ttl": 8, "pause": 9, "pause_ttl": 10, "seq": 11, "op": 12}
    for name, value in changes.items():
        reply[names[name]] = value
    return reply


@pytest.mark.parametrize(
    ("changes", "key", "kept"),
    [
        ({"verdict": b"7 soon r2 40 10"}, "open", "pause"),
        ({"verdict": b"open"}, "open", "pause"),
        ({"verdict": b"7 nan r2 40 10"}, "open", "pause"),
        ({"verdict_ttl": -1}, "open", "pause"),  # a verdict that never expires
        ({"pause": b"forever"}, "pause", "open"),
        ({"pause_ttl": -1}, "pause", "open"),
        ({"seq": b"abc"}, "control", "open"),
        ({"seq": b"-3"}, "control", "open"),
        ({"op": b"explode"}, "control", "open"),
    ],
)
def test_garbage_in_a_key_reads_as_absent(changes: dict[str, Any], key: str, kept: str) -> None:
    """A value the scripts never write is no verdict, pause or command, and is named with
    its key; the rest of the reply stands."""
    keys = types.SimpleNamespace(open="K:open", pause="K:pause", control="K:control")
    decoded = decode_dependency(_reply(**changes), keys)
    absent = {
        "open": (decoded.verdict, decoded.verdict_ttl) == (None, -2),
        "pause": (decoded.pause, decoded.pause_ttl) == (None, -2),
        "control": decoded.command == (None, None, None, None),
    }
    assert absent[key]
    assert not absent[kept]
    assert [f"K:{key}"] == [name for name, _ in decoded.garbage]
    assert f"K:{key} holds" in garbage_problem(decoded.garbage)


def test_a_clean_reply_has_no_garbage() -> None:
    assert () == decode_dependency(_reply()).garbage


@pytest.mark.parametrize(
    "reply",
    [
        None,
        [b"server"],
        _reply()[:14],
        [b"server", b"x", b"four", *_reply()[3:]],
        [b"server", b"x", None, *_reply()[3:]],
        _reply(verdict_ttl=b"soon"),
    ],
)
def test_a_reply_the_script_never_gives_is_malformed(reply: Any) -> None:
    """Not the script's answer at all: MalformedReply (the tick counts its operation failed)."""
    with pytest.raises(MalformedReply, match="the dependency script's answer"):
        decode_dependency(reply)


@pytest.mark.parametrize("reply", [[b"server", 0, b"inf", 0, 0], [b"server", 0, b"x", 0, 0], []])
def test_a_lease_reply_that_is_not_one(reply: Any) -> None:
    with pytest.raises(MalformedReply, match="the lease script's answer"):
        decode_lease(reply)


def test_a_malformed_reply_is_a_problem_of_its_own() -> None:
    text = _reason(MalformedReply("the dependency script's answer has no int at 2"))
    assert {
        "dependency:llm": "dependency 'llm': Redis answered what ringfence's script never does"
        " (MalformedReply: the dependency script's answer has no int at 2)"
    } == problem(text)


def test_a_redirection_names_the_cluster_mode() -> None:
    problems: dict[str, str] = {}
    _problem(
        problems,
        "heartbeat",
        "heartbeat",
        "MovedError: 15495 127.0.0.1:7001",
        wrong_type=False,
        namespace="svc",
        base="ringfence:{svc}",
        redirected_by="redis://node-1:7000",
    )
    assert ["cluster"] == list(problems)
    assert problems["cluster"].startswith(
        "Redis at redis://node-1:7000 is part of a Redis Cluster and sent ringfence's keys to"
        " another node (MovedError: 15495 127.0.0.1:7001): use a redis+cluster://"
    )


def test_a_verdict_is_parsed_whole_or_not_at_all() -> None:
    assert (7, 1.7e12, "r2", 40, 10) == parse_verdict("7 1700000000000 r2 40 10")
    assert parse_verdict("7 1700000000000 r2 40") is None
    assert parse_verdict("7 1700000000000 r2 40 10 extra") is None
    assert parse_verdict("7 inf r2 40 10") is None
    assert parse_verdict(None) is None


def test_a_pause_says_who_told_it() -> None:
    assert "r2 0badcafe" == pause_origin("r2 0badcafe 9")


# -- rate limits, pauses, commands --------------------------------------------------------------


@pytest.mark.parametrize(("elapsed", "accrued"), [(0.0, "62.5"), (0.3, "300.0"), (60.0, "500.0")])
def test_lease_arguments(elapsed: float, accrued: str) -> None:
    """What accrued while away is capped at two intervals, and at least a quarter of one."""
    args = lease_args(
        RateLimit(100, per=1, burst=20),
        (1.5, 4.0, 2.0, True),
        sync_interval=0.25,
        replica_id="r1",
        elapsed=elapsed,
        replicas=3,
        expected=None,
    )
    assert ["10.0", "20.0", "1.5", "4.0", 250, "100/1/20"] == args[:6]
    assert ["r1", 1, accrued, "2.0", 3, 1, 0] == args[6:]


def test_a_lease_reply_decodes() -> None:
    assert (5.0, 12.5, True) == decode_lease([b"server", 0, b"5", b"12.5", 1])
    assert (0.0, 0.0, False) == decode_lease([b"server", 0, 0, 0, 0])


def test_a_disagreement_names_this_replicas_settings() -> None:
    text = disagreement("llm", 1, RateLimit(100, per=1, burst=20))
    assert "replicas disagree on rate_limit[1] of 'llm' (this one: 100 per 1 s, burst 20)" == text


def test_pause_and_control_arguments() -> None:
    assert 1500 == pause_ms(11.5, 10.0)
    assert 1 == pause_ms(10.0001, 10.0)  # rounded up: a pause is never cut short
    assert pause_ms(10.0, 10.0) < 1
    assert ["r1 0badcafe", 3, 1500] == pause_args("r1 0badcafe", 3, 1500)
    assert ["r1", "reset", "manual"] == control_args("r1", "reset", "manual")
