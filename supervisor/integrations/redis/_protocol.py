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
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple, Protocol

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


# A URL query parameter whose value is a secret (coredis takes ?password=...).
_SECRET_PARAM: Final = re.compile(
    r"([?&;])([^=&;#]*(?:pass|pwd|secret|token|auth|credential)[^=&;#]*)=([^&;#]*)", re.I
)


def _redact(url: str) -> str:
    """
    *url* without its secrets (for messages, logs and ``repr``): the password of its user
    information (``redis://user:***@host``) and the value of every query parameter named like
    a secret (``?password=***``). Never raises, whatever the text.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        netloc = rest[:end]
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, colon, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if colon else f"{userinfo}@{host}"
        url = scheme + sep + netloc + rest[end:]
    return _SECRET_PARAM.sub(r"\1\2=***", url)


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


def redirected(where: str, text: str) -> str:
    """What a MOVED or ASK from Redis at *where* (*text*: ``_reason`` of it) means."""
    return (
        f"Redis at {where} is part of a Redis Cluster and sent ringfence's keys to another node"
        f" ({text}): use a redis+cluster:// (or rediss+cluster://) URL, or"
        " RedisShared(..., cluster=True)"
    )


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
    redirected_by: str | None = None,
) -> None:
    """
    What a script refused with *text* (``_reason`` of its error) means, into *problems* (scope
    -> why); *wrong_type*: the error is coredis's ``WrongTypeError``; *base*: the keys' prefix;
    *redirected_by*: the error is a cluster's redirection (MOVED, ASK), from Redis there.
    """
    if redirected_by is not None:
        problems["cluster"] = redirected(redirected_by, text)
    elif text.startswith(f"{MalformedReply.__name__}:"):
        problems[scope] = f"{what}: Redis answered what ringfence's script never does ({text})"
    elif "RINGFENCE_FORMAT" in text:
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


def _maybe_number(value: object) -> float | None:
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
        _maybe_number(reply[3]),
        _maybe_number(reply[4]),
        _maybe_number(reply[5]),
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


class MalformedReply(ValueError):
    """A script's reply that is not what the script answers: its operation failed."""


class DependencyReply(NamedTuple):
    clock: str | None
    epoch: int  # the shared window's
    calls: int  # the live replicas' together, in the window
    failures: int
    reporting: int  # replicas that reported calls
    failing: int  # replicas that reported failures
    verdict: str | None  # the shared open: "<epoch> <at ms> <by> <calls> <failures>"
    verdict_ttl: int  # ms
    pause: str | None  # "<pauser> <seq>"
    pause_ttl: int  # ms
    command: tuple[str | None, ...]  # (seq, op, reason, origin); seq None: none yet
    # What the keys held that ringfence never writes, read as absent: (key, value) each.
    garbage: tuple[tuple[str, str], ...] = ()

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


class Verdict(NamedTuple):
    """A shared open verdict, as ``dependency.lua`` writes it."""

    epoch: int
    at_ms: float  # on the scripts' clock
    by: str  # the replica whose tick decided it
    calls: int
    failures: int


# What the scripts write: an open verdict, a pause ("<replica id> <nonce> <seq>"), a sequence
# number (a Redis integer). Anything else in those keys was written by someone else.
_VERDICT: Final = re.compile(r"(\d+) ([0-9.e+-]+) (\S+) (\d+) (\d+)")
_PAUSE: Final = re.compile(r"\S+ [0-9a-f]{8} \d+")
_SEQ: Final = re.compile(r"[1-9]\d{0,17}")
_OPS: Final = ("isolate", "reset")


def parse_verdict(text: str | None) -> Verdict | None:
    """*text* as a shared open verdict; None: none, or not one the scripts wrote."""
    match = _VERDICT.fullmatch(text) if text is not None else None
    if match is None:
        return None
    at_ms = float(match[2]) if _is_float(match[2]) else math.nan
    if not math.isfinite(at_ms):
        return None
    return Verdict(int(match[1]), at_ms, match[3], int(match[4]), int(match[5]))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(reply: Any, index: int, what: str, kind: type[int] | type[float]) -> Any:
    """Item *index* of a *what* script's *reply* as an int or a finite float."""
    try:
        value = kind(reply[index])
    except (IndexError, TypeError, ValueError) as exc:
        msg = f"the {what} script's answer has no {kind.__name__} at {index} ({_reason(exc)})"
        raise MalformedReply(msg) from exc
    if not math.isfinite(value):
        msg = f"the {what} script's answer has {value!r} at {index}"
        raise MalformedReply(msg)
    return value


def decode_dependency(reply: Any, keys: Any = None) -> DependencyReply:
    """
    ``dependency.lua``'s reply, validated: what the keys held that the scripts never write (a
    malformed open verdict, a pause or a command sequence number, a verdict or pause that
    never expires) reads as absent and is listed in ``garbage`` with its key from *keys*
    (``DependencyKeys``; None: the key's kind).

    Raises:
        MalformedReply: the reply itself is not the script's (its length, its numbers).
    """
    if not isinstance(reply, list | tuple) or len(reply) < 15:
        msg = f"the dependency script's answer is not a list of 15 ({type(reply).__name__})"
        raise MalformedReply(msg)
    what = "dependency"
    garbage: list[tuple[str, str]] = []

    def key(kind: str) -> str:
        return str(getattr(keys, kind)) if keys is not None else kind

    verdict, verdict_ttl = _text(reply[7]), _number(reply, 8, what, int)
    if verdict is not None and (parse_verdict(verdict) is None or verdict_ttl < 0):
        shown = verdict if verdict_ttl >= 0 else f"{verdict} (never expires)"
        garbage.append((key("open"), shown))
        verdict, verdict_ttl = None, -2
    pause, pause_ttl = _text(reply[9]), _number(reply, 10, what, int)
    if pause is not None and (_PAUSE.fullmatch(pause) is None or pause_ttl < 0):
        shown = pause if pause_ttl >= 0 else f"{pause} (never expires)"
        garbage.append((key("pause"), shown))
        pause, pause_ttl = None, -2
    command = tuple(_text(value) for value in reply[11:15])
    seq, op = command[0], command[1]
    if seq is not None and (_SEQ.fullmatch(seq) is None or op not in _OPS):
        garbage.append((key("control"), f"seq={seq!r} op={op!r}"))
        command = (None, None, None, None)
    return DependencyReply(
        clock=_text(reply[0]),
        epoch=_number(reply, 2, what, int),
        calls=_number(reply, 3, what, int),
        failures=_number(reply, 4, what, int),
        reporting=_number(reply, 5, what, int),
        failing=_number(reply, 6, what, int),
        verdict=verdict,
        verdict_ttl=verdict_ttl,
        pause=pause,
        pause_ttl=pause_ttl,
        command=command,
        garbage=tuple(garbage),
    )


def garbage_problem(garbage: Iterable[tuple[str, str]]) -> str:
    """The degraded reason for values the scripts never write, found in *garbage*'s keys."""
    found = "; ".join(f"{key} holds {value[:80]!r}" for key, value in garbage)
    return (
        f"Redis holds values ringfence never writes ({found}): read as absent; delete those"
        " keys (another program or a hand edit wrote them)"
    )


def verdict_delay(verdict: str, wall: float) -> float | None:
    """Seconds from a shared open *verdict* (on the server's clock) to *wall*; None: unknown."""
    parsed = parse_verdict(verdict)
    return None if parsed is None else wall - parsed.at_ms / 1000


def verdict_fields(verdict: str) -> tuple[str | None, int | None, int | None]:
    """Who opened, with how many calls and failures, from a shared open *verdict*."""
    parsed = parse_verdict(verdict)
    if parsed is None:
        return None, None, None
    return parsed.by, parsed.calls, parsed.failures


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
    """
    Raises:
        MalformedReply: not the lease script's reply.
    """
    what = "lease"
    return LeaseReply(
        _number(reply, 2, what, float),
        _number(reply, 3, what, float),
        bool(_number(reply, 4, what, int)),
    )


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
