"""``ringfence demo --replicas``: replica processes pacing one shared limit."""

from __future__ import annotations

import io

import pytest

from supervisor.__main__ import main
from supervisor._demo._replicas import ReplicasConfig, run_replicas, summary

from .conftest import need_redis_server


def test_three_replicas_keep_to_one_limit() -> None:
    """Together the replicas admit no more than one limit allows (its rate over the run plus
    its burst), each of them some, and no call is lost."""
    need_redis_server()
    out = io.StringIO()
    config = ReplicasConfig(replicas=3, duration=3.0, clients=9, rate=30.0)
    result = run_replicas(config, out)
    seconds = len(result.per_second)
    assert 3 == seconds
    # The limit's rate over the run plus its burst; plus the standing lease (one call) each
    # replica may hold unused, taken before the bucket refilled (_lease.py's docstring).
    assert result.admitted <= config.rate * seconds + config.rate + config.replicas
    assert all(sum(column) > 0 for column in zip(*result.per_second, strict=True))
    assert 0 == result.lost
    text = out.getvalue() + summary(result)
    assert "3 replicas share RateLimit(30, per=1)" in text
    assert "Calls lost or hung: 0." in text


def test_the_command_line_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`ringfence demo --replicas 2`: the table, then the summary; exit status 0."""
    need_redis_server()
    assert 0 == main(["demo", "--replicas", "2", "--duration", "2", "--clients", "4"])
    out = capsys.readouterr().out
    assert "2 replicas share RateLimit(30, per=1)" in out
    assert "Together the 2 replicas admitted" in out


def test_without_redis_server_the_demo_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No redis-server on this machine: exit status 2 and how to install it."""
    from supervisor.integrations.redis import _server

    monkeypatch.setattr(_server, "find_redis_server", lambda: None)
    assert 2 == main(["demo", "--replicas", "3"])
    err = capsys.readouterr().err
    assert err.startswith("ringfence demo: error: --replicas starts a redis-server of its own")
    assert "apt-get install redis-server" in err


def test_replicas_need_two_or_more() -> None:
    """One replica shares nothing: refused like any bad argument."""
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--replicas", "1"])
    assert 2 == exited.value.code
