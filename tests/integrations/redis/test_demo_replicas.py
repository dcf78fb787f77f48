"""``ringfence demo --replicas``: replica processes pacing one shared limit."""

from __future__ import annotations

import io

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
    assert result.admitted <= config.rate * seconds + config.rate
    assert all(sum(column) > 0 for column in zip(*result.per_second, strict=True))
    assert 0 == result.lost
    text = out.getvalue() + summary(result)
    assert "3 replicas share RateLimit(30, per=1)" in text
    assert "Calls lost or hung: 0." in text
