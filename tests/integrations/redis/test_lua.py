"""
The Lua scripts alone, on fakeredis with Lua (no server, no event loop). The clock is the
caller's (``clock="client"``), so every time here is an explicit number of milliseconds.
The same scripts run against the real server in the other modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import fakeredis
import pytest
import redis

from supervisor.integrations.redis._keys import FORMAT, Keys
from supervisor.integrations.redis._scripts import SCRIPTS

KEYS = Keys("test")
DEP = KEYS.dependency("llm")
LIMIT = KEYS.limit("llm", 0)


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def run(
    r: fakeredis.FakeRedis,
    name: str,
    keys: Sequence[str],
    args: Sequence[object],
    *,
    now: float,
    mode: str = "client",
    fmt: str = FORMAT,
    deadline: float = 0,
) -> list[object]:
    script = SCRIPTS[name]
    all_keys = [KEYS.meta, *keys]
    reply = r.eval(script.text, len(all_keys), *all_keys, mode, repr(now), fmt, deadline, *args)
    return reply  # type: ignore[no-any-return]


def text(value: object) -> str:
    assert isinstance(value, bytes)
    return value.decode()


#: A clock tolerance that clamps nothing: the times here are small numbers, far from Redis's.
NO_CLAMP = 10**15


def heartbeat(
    r: fakeredis.FakeRedis,
    replica: str,
    now: float,
    ttl: float = 1000,
    *,
    detail: bool = True,
    summary: str = "{}",
    tolerance: int = NO_CLAMP,
    mode: str = "client",
) -> list[object]:
    keys = [KEYS.replicas, KEYS.summaries, KEYS.clocks]
    args = [replica, ttl, summary, int(detail), tolerance]
    return run(r, "heartbeat", keys, args, now=now, mode=mode)


def lease(
    r: fakeredis.FakeRedis,
    now: float,
    *,
    want: float,
    given: float = 0,
    replica: str = "a",
    hungry: bool = False,
    elapsed: float = 250,
    t_ms: float = 10,  # 100 per second
    burst: float = 100,
    horizon: float = 250,
    settings: str = "100/1/100",
    need: float = 0,
    known: int = 1,
    recovering: bool = False,
    expected: int = 0,
) -> tuple[float, float, int]:
    reply = run(
        r,
        "lease",
        [LIMIT, KEYS.replicas],
        [
            *(t_ms, burst, given, want, horizon, settings, replica, int(hungry)),
            *(elapsed, need, known, int(recovering), expected),
        ],
        now=now,
    )
    return float(text(reply[2])), float(text(reply[3])), int(reply[4])  # type: ignore[call-overload]


def dependency(
    r: fakeredis.FakeRedis,
    replica: str,
    now: float,
    *,
    calls: int,
    failures: int,
    epoch: int = 0,
    ratio: float = 0.5,
    volume: int = 10,
    replicas: int = 2,
    open_for: int = 30_000,
) -> list[object]:
    keys = [KEYS.replicas, DEP.health, DEP.open, DEP.pause, DEP.control, DEP.state]
    args = [replica, calls, failures, epoch, ratio, volume, replicas, open_for, 60_000]
    return run(r, "dependency", keys, args, now=now)


# -- the prelude ------------------------------------------------------------------------------


def test_client_clock_is_the_callers_time(r: fakeredis.FakeRedis) -> None:
    """With clock="client" the scripts run on the time the caller passed."""
    reply = heartbeat(r, "a", now=1234.5)
    assert [b"client", b"1234.5"] == reply[:2]


def test_server_clock_is_redis_time(r: fakeredis.FakeRedis) -> None:
    """With clock="auto" the scripts run on Redis's TIME, whatever the caller says."""
    reply = heartbeat(r, "a", now=5, mode="auto")
    assert b"server" == reply[0]
    assert float(text(reply[1])) > 1e12


def test_another_format_is_refused_before_anything_is_written(r: fakeredis.FakeRedis) -> None:
    """A namespace of another key format: an error naming both formats, and no write."""
    r.hset(KEYS.meta, "format", "0")
    with pytest.raises(redis.ResponseError, match=r"RINGFENCE_FORMAT .* format 0, .* format 1"):
        heartbeat(r, "a", now=1000)
    assert 0 == r.exists(KEYS.replicas)


def test_a_script_run_after_its_deadline_does_nothing(r: fakeredis.FakeRedis) -> None:
    """A server stopped and resumed runs what it had read: too late, nothing is granted."""
    with pytest.raises(redis.ResponseError, match=r"^RINGFENCE_LATE "):
        run(
            r,
            "lease",
            [LIMIT, KEYS.replicas],
            [10, 100, 0, 50, 250, "s", "a", 0, 250, 0, 1, 0, 0],
            now=2000,
            deadline=1500,
        )
    assert 0 == r.exists(LIMIT)
    assert 1 == run(r, "pause", [DEP.pause], ["a", 1, 5000], now=1000, deadline=1500)


# -- heartbeat ----------------------------------------------------------------------------------


def test_heartbeat_counts_live_replicas_and_drops_expired_ones(r: fakeredis.FakeRedis) -> None:
    """Replicas whose heartbeat expired are dropped, with their summaries."""
    heartbeat(r, "a", now=1000, ttl=1000)
    heartbeat(r, "b", now=1500, ttl=1000)
    reply = heartbeat(r, "c", now=2200, ttl=1000)  # a expired at 2000
    assert 2 == reply[2]
    assert {b"b", b"c"} == set(reply[6::2])
    assert {b"b", b"c"} == set(r.hkeys(KEYS.summaries))
    assert FORMAT == text(r.hget(KEYS.meta, "format"))


# -- lease --------------------------------------------------------------------------------------


def test_a_full_bucket_grants_the_burst_at_once_then_the_pace(r: fakeredis.FakeRedis) -> None:
    """GCRA in batches: the burst is due at once, the rest at the rate, up to the horizon."""
    granted, base, _ = lease(r, 10_000, want=1000)
    # burst 100 plus 250 ms of refill at 10 ms per unit
    assert 125 == granted
    assert -1000 == base  # unit u is due at now - 1000 + 10u: the first 100 at once
    granted, base, _ = lease(r, 10_000, want=1000)
    assert 0 == granted  # nothing more is due within the horizon
    granted, base, _ = lease(r, 10_100, want=1000)
    assert 10 == granted  # 100 ms later: 10 more units
    assert 150 == base  # continuing where the first batch ended (due from 10_260)


def test_giving_back_moves_the_schedule_back_never_below_now(r: fakeredis.FakeRedis) -> None:
    """Returned units are leased again; a refund never makes the bucket fuller than full."""
    lease(r, 10_000, want=125)
    granted, _, _ = lease(r, 10_000, want=1000, given=25)
    assert 25 == granted
    granted, _, _ = lease(r, 20_000, want=1000, given=500)  # the bucket is full anyway
    assert 125 == granted


def test_charged_units_delay_everyone(r: fakeredis.FakeRedis) -> None:
    """Units used beyond a lease (a settle that cost more) move the schedule forward."""
    lease(r, 10_000, want=125)
    granted, _, _ = lease(r, 10_500, want=1000, given=-30)
    assert 50 - 30 == granted


def test_a_hungry_replica_takes_its_share_when_others_are_hungry(r: fakeredis.FakeRedis) -> None:
    """Two hungry replicas: each takes half the refill (+20 %) and half the bucket."""
    heartbeat(r, "a", now=10_000)
    heartbeat(r, "b", now=10_000)
    a, _, _ = lease(r, 10_000, want=1000, replica="a", hungry=True, elapsed=250)
    # a alone is hungry: 1.2 * 25 refill + half the 100 units in the bucket
    assert 30 + 50 == pytest.approx(a)
    b, _, _ = lease(r, 10_000, want=1000, replica="b", hungry=True, elapsed=250)
    # b shares the refill with a and takes half of what the bucket still holds (20)
    assert 15 + 10 == pytest.approx(b)
    a, _, _ = lease(r, 10_250, want=1000, replica="a", hungry=True, elapsed=250)
    # 250 ms later: half the refill again, and half the 20 units the bucket holds by now
    assert 15 + 10 == pytest.approx(a)


def test_a_replica_that_is_not_hungry_gets_what_it_wants(r: fakeredis.FakeRedis) -> None:
    """No cap for a replica that turned nobody away: its want is the demand it saw."""
    heartbeat(r, "a", now=10_000)
    heartbeat(r, "b", now=10_000)
    lease(r, 10_000, want=1000, replica="b", hungry=True)
    granted, _, _ = lease(r, 10_000, want=10, replica="a")
    assert 10 == granted


def test_a_hungry_share_is_never_less_than_one_whole_call(r: fakeredis.FakeRedis) -> None:
    """The last unit of a slow limit goes to one replica whole, not in halves to two."""
    heartbeat(r, "a", now=10_000)
    heartbeat(r, "b", now=10_000)
    slow = {"t_ms": 360_000.0, "burst": 10, "horizon": 250, "elapsed": 250}
    lease(r, 10_000, want=9, replica="c", **slow)  # 9 of the 10 units taken
    b, _, _ = lease(r, 10_000, want=5, replica="b", hungry=True, need=1, **slow)
    assert 1 == pytest.approx(b, abs=1e-3)  # not half of it
    a, _, _ = lease(r, 10_000, want=5, replica="a", hungry=True, need=1, **slow)
    assert 0 == pytest.approx(a, abs=1e-3)
    lease(r, 10_000, want=1, given=0.5, replica="b", **slow)  # half of it back
    a, _, _ = lease(r, 10_000, want=5, replica="a", hungry=True, need=1, **slow)
    assert 0 == a  # half a unit is no use for a call of one: it stays for whoever can


def test_the_first_replica_back_after_an_outage_takes_its_share_only(
    r: fakeredis.FakeRedis,
) -> None:
    """Heartbeats expired during an outage: the replica counts those it last knew."""
    heartbeat(r, "a", now=10_000)
    granted, _, _ = lease(r, 10_000, want=1000, hungry=True, elapsed=250, known=4)
    assert 30 + 25 == pytest.approx(granted)  # its refill, and a quarter of the bucket


def test_a_replica_back_from_a_fallback_finds_the_bucket_empty(r: fakeredis.FakeRedis) -> None:
    """Redis was away (or restarted empty) while the replicas admitted the rate locally: a
    recovering replica gets units at the limit's pace, never a second burst."""
    granted, base, _ = lease(r, 10_000, want=1000, recovering=True)
    assert 25 == granted  # one horizon of the rate, not the bucket's 100 on top
    assert 0 == base  # due from now on, one every 10 ms
    granted, _, _ = lease(r, 10_000, want=1000, replica="b")  # not recovering: nothing left
    assert 0 == granted


def test_replicas_that_disagree_on_the_limit_are_told(r: fakeredis.FakeRedis) -> None:
    """A limit leased with other settings than the last lease's sets the 'differ' flag."""
    assert 0 == lease(r, 10_000, want=1)[2]
    assert 1 == lease(r, 10_000, want=1, settings="200/1/200")[2]
    assert 0 == lease(r, 10_000, want=1, settings="200/1/200")[2]


def test_the_limit_key_expires_once_the_bucket_is_full_again(r: fakeredis.FakeRedis) -> None:
    """The key's TTL covers the schedule ahead (a missing key reads as a full bucket)."""
    lease(r, 10_000, want=125)
    assert 1000 < r.pttl(LIMIT) <= 250 + 1000 + 1000


# -- dependency: the shared open verdict --------------------------------------------------------


def test_the_aggregate_of_live_replicas_opens(r: fakeredis.FakeRedis) -> None:
    """Failures from two replicas cross the ratio together: the verdict opens, epoch moves."""
    heartbeat(r, "a", now=1000)
    heartbeat(r, "b", now=1000)
    reply = dependency(r, "a", 1000, calls=10, failures=4)
    assert reply[7] is None  # 4 of 10 so far
    reply = dependency(r, "b", 1000, calls=10, failures=8)
    assert 1 == reply[2]  # the new epoch
    assert [20, 12, 2, 2] == reply[3:7]
    assert text(reply[7]).startswith("1 1000 b 20 12")
    assert 30_000 == reply[8]
    assert 0 == r.exists(DEP.health)  # a fresh window for the new epoch


def test_one_sick_replica_does_not_open_everyone(r: fakeredis.FakeRedis) -> None:
    """All the failures from one replica, with two live: no verdict (min replicas 2)."""
    heartbeat(r, "a", now=1000)
    heartbeat(r, "b", now=1000)
    reply = dependency(r, "a", 1000, calls=20, failures=20)
    assert reply[7] is None
    assert [20, 20, 1, 1] == reply[3:7]


def test_a_lone_replica_opens_on_its_own_evidence(r: fakeredis.FakeRedis) -> None:
    """With one live replica the minimum of replicas is one."""
    heartbeat(r, "a", now=1000)
    reply = dependency(r, "a", 1000, calls=20, failures=20)
    assert reply[7] is not None


def test_below_the_minimum_volume_nothing_opens(r: fakeredis.FakeRedis) -> None:
    """Every call failed, but too few calls."""
    heartbeat(r, "a", now=1000)
    heartbeat(r, "b", now=1000)
    dependency(r, "a", 1000, calls=3, failures=3)
    reply = dependency(r, "b", 1000, calls=3, failures=3, volume=10)
    assert reply[7] is None


def test_dead_replicas_and_old_epochs_do_not_count(r: fakeredis.FakeRedis) -> None:
    """A replica whose heartbeat expired, or counts from an older epoch, are left out."""
    heartbeat(r, "a", now=1000, ttl=500)
    heartbeat(r, "b", now=1000, ttl=5000)
    dependency(r, "a", 1000, calls=10, failures=10)
    reply = dependency(r, "b", 2000, calls=10, failures=0)  # a is dead by 1500
    assert [10, 0, 1, 0] == reply[3:7]
    r.hset(DEP.state, "epoch", 3)
    reply = dependency(r, "b", 2000, calls=10, failures=0, epoch=0)
    assert [0, 0, 0, 0] == reply[3:7]
    assert 3 == reply[2]


def test_no_verdict_for_a_dependency_without_one(r: fakeredis.FakeRedis) -> None:
    """Ratio 0 (a dependency without a breaker): counts are shared, nothing opens."""
    heartbeat(r, "a", now=1000)
    reply = dependency(r, "a", 1000, calls=50, failures=50, ratio=0)
    assert reply[7] is None


# -- pause and control --------------------------------------------------------------------------


def test_the_longest_pause_wins_and_everyone_reads_it(r: fakeredis.FakeRedis) -> None:
    """A pause is set unless a longer one stands; the dependency script reads it back."""
    assert 1 == run(r, "pause", [DEP.pause], ["a", 1, 5000], now=1000)
    assert 0 == run(r, "pause", [DEP.pause], ["b", 1, 2000], now=1000)
    assert 1 == run(r, "pause", [DEP.pause], ["b", 2, 9000], now=1000)
    heartbeat(r, "a", now=1000)
    reply = dependency(r, "a", 1000, calls=0, failures=0)
    assert b"b 2" == reply[9]
    assert 8000 < reply[10] <= 9000  # type: ignore[operator]


def test_a_cluster_reset_lifts_the_verdict_and_starts_a_fresh_window(
    r: fakeredis.FakeRedis,
) -> None:
    """control.lua: isolate then reset, each numbered; reset deletes the open verdict."""
    heartbeat(r, "a", now=1000)
    dependency(r, "a", 1000, calls=20, failures=20)
    assert 1 == r.exists(DEP.open)
    control = [DEP.control, DEP.open, DEP.state, DEP.health]
    assert 1 == run(r, "control", control, ["a", "isolate", "maintenance"], now=1000)
    reply = dependency(r, "a", 1000, calls=0, failures=0, epoch=1)
    assert [b"1", b"isolate", b"maintenance", b"a"] == reply[11:15]
    assert 2 == run(r, "control", control, ["b", "reset", "manual"], now=1000)
    assert 0 == r.exists(DEP.open)
    reply = dependency(r, "a", 1000, calls=0, failures=0, epoch=1)
    assert 2 == reply[2]  # a new epoch
    assert reply[7] is None
    assert [b"2", b"reset", b"manual", b"b"] == reply[11:15]


def test_another_limits_schedule_is_capped_at_a_full_bucket_ahead(
    r: fakeredis.FakeRedis,
) -> None:
    """The limit stored at an index had other settings (a reconfigure): its schedule, an hour
    ahead, is capped at one horizon and a full bucket of this limit's, so this limit starts
    empty and refills at its pace, instead of waiting for the hour."""
    hourly = {"t_ms": 3_600_000, "burst": 1, "settings": "1/3600/1"}
    assert 1 == lease(r, 10_000, want=1, **hourly)[0]  # tat: an hour ahead
    granted, _, differ = lease(r, 10_000, want=25)  # 100/s, burst 100, at the same index
    assert (0, 1) == (granted, differ)  # empty: the cap is now + 250 + 100 * 10 ms
    granted, base, differ = lease(r, 10_250, want=25)
    assert (25, 0) == (granted, differ)  # a horizon's refill, due at its pace
    assert 0 == base  # unit u due at now + 10u ms: the capped schedule, at this limit's pace


def test_a_schedule_within_the_cap_is_left_alone(r: fakeredis.FakeRedis) -> None:
    """Settings that differ but a schedule already within this limit's reach: no change."""
    lease(r, 10_000, want=10)  # 100/s: tat 10_100
    granted, base, differ = lease(r, 10_000, want=10, settings="100/1/200")
    assert (10, 1) == (granted, differ)
    assert 100 == base + 1000  # continues at tat 10_100 (base = tat - burst*T)


def test_a_heartbeat_carries_other_replicas_summaries_only_when_asked(
    r: fakeredis.FakeRedis,
) -> None:
    """What a replica receives per tick does not grow with the fleet: the summaries come
    back only at the heartbeat that asks for them (cluster_status())."""
    summary = "x" * 2000
    for i in range(10):
        heartbeat(r, f"r{i}", now=1000 + i, summary=summary)
    quiet = heartbeat(r, "r0", now=1100, summary=summary, detail=False)
    assert 10 == quiet[2]
    assert 6 == len(quiet)  # clock, now, live, and the three clock figures: nothing per replica
    asked = heartbeat(r, "r0", now=1101, summary=summary, detail=True)
    assert {f"r{i}".encode() for i in range(10)} == set(asked[6::2])


def test_heartbeat_measures_each_clock_against_redis(r: fakeredis.FakeRedis) -> None:
    """On Redis's TIME the heartbeat reports this replica's offset, the live replicas' median
    and the largest distance from it; an expired replica's offset is dropped."""
    import time

    wall = time.time() * 1000
    heartbeat(r, "a", now=wall, mode="auto", ttl=60_000)
    heartbeat(r, "b", now=wall + 10, mode="auto", ttl=60_000)
    reply = heartbeat(r, "fast", now=wall + 5000, mode="auto", ttl=60_000)
    offset, median, spread = (float(text(v)) for v in reply[3:6])
    assert 4000 < offset - median < 5500
    assert 4000 < spread < 5500
    assert {b"a", b"b", b"fast", b"fleet median", b"fleet tolerance"} == set(r.hkeys(KEYS.clocks))


def test_expected_replicas_keep_the_missing_ones_shares(r: fakeredis.FakeRedis) -> None:
    """One live replica of four expected: the others may be admitting their quarters locally
    (cut off, or started while Redis was away), so the live one gets a quarter of the pace;
    without expected_replicas, all of it."""
    for expected, pace in ((4, 0.25), (0, 1.0)):
        r.flushall()
        heartbeat(r, "a", now=0, ttl=60_000)
        granted = lease(r, 0, want=100, expected=expected)[0]  # the burst, at once
        assert 100 == granted
        total = 0.0
        for tick in range(1, 41):  # 10 s of ticks, always asking for more than accrues
            total += lease(r, tick * 250, want=50, expected=expected)[0]
        assert pace * 1000 == pytest.approx(total, abs=25 + 3)  # 100/s x 10 s, +- a horizon
