"""
The protocol between a replica and ringfence's scripts, without the I/O (sans-I/O).

What each script (``lua/``) is given and what its answer means: the arguments built from the
sync actor's state (:func:`script_head`, ``*_args``), the replies decoded into records
(``decode_*``), what a refused script means (:func:`_problem`), the heartbeat's summary of
this replica (:func:`summary`) and the shared verdict's settings from a dependency's breaker
(:func:`_verdict_settings`). Nothing here imports coredis or anyio, or awaits: the sync actor
(``_sync.py``) sends what this builds and applies what this decodes.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import urlsplit, urlunsplit

from policies import Breaker, BreakHistory, RateLimit

from ._keys import FORMAT

# A dependency registered without a breaker gets one that never trips (supervisor._actor):
# no shared verdict either.
_NEVER: Final = sys.maxsize
# A script's deadline is the tick's, on the script's clock, plus this much (milliseconds): the
# offset between the clocks is measured over a round trip, so it is off by up to half of one.
_LATE_SLACK_MS: Final = 50.0

Arg = str | int | float


class Status(Protocol):
    """What the summary reads of a dependency's status (``supervisor.DependencyStatus``)."""

    @property
    def state(self) -> object: ...
    @property
    def calls(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def pause_remaining(self) -> float: ...
    @property
    def shared_open_until(self) -> float | None: ...


# -- text ---------------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _redact(url: str) -> str:
    """*url* without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _leaf(exc: BaseException) -> BaseException:
    """
    The exception itself, or the first leaf of a group: coredis's connection pool runs a task
    group, and what its ``async with`` body raises comes out wrapped in an ExceptionGroup.
    """
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception (group), as ``Type: message``."""
    exc = _leaf(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _expected_type(suffix: str) -> str | None:
    """The Redis type of a key of this format, from its name after the prefix; None: not ours."""
    parts = suffix.split(":")
    if parts in (["meta"], ["summaries"], ["clocks"]):
        return "hash"
    if parts == ["clock"]:
        return "string"
    if parts == ["replicas"]:
        return "zset"
    if len(parts) == 3 and parts[0] == "dep":
        kinds = {"health": "hash", "open": "string", "pause": "string", "control": "hash"}
        return kinds.get(parts[2], "hash" if parts[2] == "state" else None)
    if len(parts) == 3 and parts[0] == "limit" and parts[2].isdigit():
        return "hash"
    return None


def _problem(
    problems: dict[str, str],
    scope: str,
    what: str,
    text: str,
    *,
    wrong_type: bool,
    namespace: str,
    base: str,
) -> None:
    """
    What a script refused with *text* (``_reason`` of its error) means, into *problems* (scope
    -> why); *wrong_type*: the error is coredis's ``WrongTypeError``; *base*: the keys' prefix.
    """
    if "RINGFENCE_FORMAT" in text:
        problems["format"] = (
            f"namespace {namespace!r} is used by another ringfence version"
            f" ({text.split('RINGFENCE_FORMAT ', 1)[1]}); use another namespace"
        )
    elif "RINGFENCE_LATE" in text:
        problems["late"] = (
            "Redis ran ringfence's scripts after their deadline (a stalled or overloaded"
            " server); they did nothing"
        )
    elif "RINGFENCE_NOTIME" in text:
        problems["clock"] = text.split("RINGFENCE_NOTIME ", 1)[1]
    elif "WRONGTYPE" in text or wrong_type:
        problems[scope] = (
            f"{what}: a key under {base}: holds another application's data"
            f" ({text}); use another namespace or delete those keys"
        )
    else:
        problems[scope] = f"{what}: Redis refused ringfence's script ({text})"


# -- every script -------------------------------------------------------------------------------


def script_head(clock: str, client_ms: float, offset: float | None, timeout: float) -> list[Arg]:
    """
    The arguments every script starts with: the clock setting, this replica's time (ms), the
    key format, and the deadline on the scripts' clock (0: unknown before the first answer,
    whose clock's *offset* from this replica's is unknown).
    """
    deadline = 0.0
    if offset is not None:
        deadline = client_ms + offset + 1000 * timeout + _LATE_SLACK_MS
    return [clock, repr(client_ms), FORMAT, repr(deadline)]


# -- heartbeat ----------------------------------------------------------------------------------


def heartbeat_args(
    replica_id: str, ttl_ms: int, summary: str, *, detail: bool, tolerance_ms: int
) -> list[Arg]:
    """*detail*: send back every live replica's summary (``cluster_status()`` asked)."""
    return [replica_id, ttl_ms, summary, 1 if detail else 0, tolerance_ms]


class HeartbeatReply(NamedTuple):
    clock: str | None  # the scripts' clock: "server" or "client"
    time_ms: float  # the scripts' time
    replicas: int  # live replicas, at least 1
    # This replica's clock minus Redis's, the live replicas' median of that, and the largest
    # distance of one from the median (ms); None: Redis's time unknown.
    offset_ms: float | None
    median_ms: float | None
    spread_ms: float | None
    summaries: dict[str, Any] | None  # replica id -> its summary; None: not asked


def _number(value: object) -> float | None:
    text = _text(value)
    return None if text is None else float(text)


def decode_heartbeat(reply: Any, *, detail: bool) -> HeartbeatReply:
    summaries: dict[str, Any] | None = None
    if detail:
        summaries = {}
        for i in range(6, len(reply) - 1, 2):
            try:
                summaries[_text(reply[i]) or "?"] = json.loads(reply[i + 1])
            except ValueError:
                continue
    return HeartbeatReply(
        _text(reply[0]),
        float(reply[1]),
        max(1, int(reply[2])),
        _number(reply[3]),
        _number(reply[4]),
        _number(reply[5]),
        summaries,
    )


def summary(
    *,
    replica_id: str,
    host: str,
    pid: int,
    wall: float,
    now: float,
    degraded: str | None,
    statuses: Mapping[str, Status],
    windows: Mapping[str, tuple[int, int]],
    limits: Iterable[tuple[str, int, str, float]],
) -> dict[str, Any]:
    """
    This replica's summary for the heartbeat (``cluster_status()["replicas"]``): *windows* are
    the counts each dependency reports, *limits* ``(dependency, index, mode, leased)`` sorted.
    """
    limits = list(limits)
    dependencies: dict[str, Any] = {}
    for name, status in statuses.items():
        window = windows.get(name)
        dependencies[name] = {
            "state": str(status.state),
            "calls": status.calls,
            "failures": status.failures,
            "rejected": status.rejected,
            "in_flight": status.in_flight,
            "queued": status.queued,
            "paused": status.pause_remaining > 0,
            "shared_open": status.shared_open_until is not None and status.shared_open_until > now,
            "window": list(window) if window is not None else [0, 0],
            "limits": [
                {"index": index, "mode": mode, "leased": round(leased, 3)}
                for dependency, index, mode, leased in limits
                if dependency == name
            ],
        }
    return {
        "id": replica_id,
        "host": host,
        "pid": pid,
        "wall": wall,
        "degraded": degraded,
        "dependencies": dependencies,
    }


# -- one dependency -----------------------------------------------------------------------------


def _verdict_settings(
    breaker: Breaker | None,
    *,
    open_ratio: float | None,
    open_min_volume: int | None,
    open_for: float | None,
    window: float | None,
) -> tuple[float, int, float, float]:
    """(ratio (0: no shared verdict), min volume, open for (s), window (s))."""
    if breaker is None or (
        breaker.failure_ratio is None and (breaker.failure_threshold or 0) >= _NEVER
    ):
        return 0.0, 1, 1.0, window or 30.0
    if breaker.failure_ratio is not None:
        ratio = breaker.failure_ratio
        volume = breaker.min_throughput or 10
        window = window or breaker.sampling or 30.0
    else:
        ratio = 0.5
        volume = 2 * (breaker.failure_threshold or 5)
        window = window or 30.0
    if open_ratio is not None:
        ratio = open_ratio
    if open_min_volume is not None:
        volume = open_min_volume
    duration = open_for
    if duration is None:
        try:
            duration = float(breaker.break_duration(BreakHistory(openings=1)))
        except Exception:  # a user's callable that needs more than openings: be plain
            duration = 30.0
    return ratio, volume, max(duration, 0.001), window


def dependency_args(
    replica_id: str,
    counts: tuple[int, int],
    epoch: int,
    settings: tuple[float, int, float, float],
    min_replicas: int,
) -> list[Arg]:
    """*counts*: (calls, failures) in this replica's window; *settings*: _verdict_settings."""
    ratio, volume, duration, window = settings
    return [
        replica_id,
        counts[0],
        counts[1],
        epoch,
        repr(ratio),
        volume,
        min_replicas,
        round(duration * 1000),
        round(window * 1000),
    ]


class DependencyReply(NamedTuple):
    clock: str | None
    epoch: int  # the shared window's
    calls: int  # the live replicas' together, in the window
    failures: int
    reporting: int  # replicas that reported calls
    failing: int  # replicas that reported failures
    verdict: str | None  # the shared open: "<seq> <at ms> <by> <calls> <failures>"
    verdict_ttl: int  # ms
    pause: str | None  # "<pauser> <seq>"
    pause_ttl: int  # ms
    command: tuple[str | None, ...]  # (seq, op, reason, origin); seq None: none yet

    def aggregate(self) -> dict[str, Any]:
        """The aggregate window, as ``cluster_status()["dependencies"][name]`` starts."""
        return {
            "calls": self.calls,
            "failures": self.failures,
            "failure_ratio": self.failures / self.calls if self.calls else 0.0,
            "reporting": self.reporting,
            "failing": self.failing,
            "epoch": self.epoch,
            "control": None,
        }


def decode_dependency(reply: Any) -> DependencyReply:
    return DependencyReply(
        clock=_text(reply[0]),
        epoch=int(reply[2]),
        calls=int(reply[3]),
        failures=int(reply[4]),
        reporting=int(reply[5]),
        failing=int(reply[6]),
        verdict=_text(reply[7]),
        verdict_ttl=int(reply[8]),
        pause=_text(reply[9]),
        pause_ttl=int(reply[10]),
        command=tuple(_text(value) for value in reply[11:15]),
    )


def verdict_delay(verdict: str, wall: float) -> float | None:
    """Seconds from a shared open *verdict* (on the server's clock) to *wall*; None: unknown."""
    try:
        return wall - float(verdict.split(" ")[1]) / 1000
    except (IndexError, ValueError):
        return None


def verdict_fields(verdict: str) -> tuple[str | None, int | None, int | None]:
    """Who opened, with how many calls and failures, from a shared open *verdict*."""
    fields = verdict.split(" ")
    return (
        fields[2] if len(fields) > 2 else None,
        int(fields[3]) if len(fields) > 3 else None,
        int(fields[4]) if len(fields) > 4 else None,
    )


def pause_origin(pause: str) -> str:
    """Who told a shared pause (``RedisShared``'s pauser: replica id and nonce)."""
    return pause.rsplit(" ", 1)[0]


# -- rate limits, pauses, commands --------------------------------------------------------------


def lease_args(
    config: RateLimit,
    cut: tuple[float, float, float, bool],
    *,
    sync_interval: float,
    replica_id: str,
    elapsed: float,
    replicas: int,
    expected: int | None,
) -> list[Arg]:
    """
    *cut*: ``LeasedLimiter.cut`` (given back, wanted, hungry, recovering); *expected*:
    ``RedisShared``'s ``expected_replicas``.
    """
    given, want, hungry, recovering = cut
    interval_ms = config.per / config.rate * 1000
    settings = f"{config.rate!r}/{config.per!r}/{config.capacity!r}"
    return [
        repr(interval_ms),
        repr(float(config.capacity)),
        repr(given),
        repr(want),
        round(sync_interval * 1000),
        settings,
        replica_id,
        1 if hungry else 0,
        # after an outage, what accrued while away is the bucket's, not this replica's
        repr(min(max(elapsed, sync_interval / 4), 2 * sync_interval) * 1000),
        repr(hungry),
        replicas,
        1 if recovering else 0,
        expected or 0,
    ]


class LeaseReply(NamedTuple):
    granted: float  # units
    base_ms: float  # from the answer to the first granted turn
    # Another limit's settings are stored: a limit reconfigured away (lua/lease.lua), or
    # replicas that disagree.
    other_settings: bool


def decode_lease(reply: Any) -> LeaseReply:
    return LeaseReply(float(reply[2]), float(reply[3]), bool(int(reply[4])))


def disagreement(name: str, index: int, config: RateLimit) -> str:
    """The warning when replicas disagree on a limit's settings."""
    return (
        f"replicas disagree on rate_limit[{index}] of {name!r} (this one:"
        f" {config.rate:g} per {config.per:g} s, burst {config.capacity:g})"
    )


def pause_ms(until: float, now: float) -> int:
    """A pause until *until* (loop clock) as the script takes it; < 1: nothing to tell."""
    return math.ceil((until - now) * 1000)


def pause_args(pauser: str, seq: int, ms: int) -> list[Arg]:
    return [pauser, seq, ms]


def control_args(replica_id: str, op: str, reason: str) -> list[Arg]:
    return [replica_id, op, reason]
