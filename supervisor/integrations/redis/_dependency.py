"""
One dependency as the sync actor keeps it (``_sync.py``): this replica's calls and failures
over the shared window, what it reports, and the verdicts the other replicas' answer brings,
applied to the dependency's actor through the replica hooks (``shared_open``,
``shared_pause``). No I/O: the sync actor sends and receives, this decides what a reply means
here and remembers it. Only the sync actor writes it; the facade (``cluster_status()``) reads
its fields.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, final

from ._keys import DependencyKeys
from ._protocol import DependencyReply, pause_origin, verdict_delay

if TYPE_CHECKING:
    from supervisor import DependencyStatus
    from supervisor._runtime import ReplicaDependency

__all__ = ("DependencySync",)


@final
class DependencySync:
    """What the sync actor keeps about one dependency (only the sync actor writes it)."""

    __slots__ = (
        "aggregate",
        "control",
        "epoch",
        "keys",
        "last",
        "name",
        "open",
        "open_delay",
        "open_until",
        "pause",
        "pause_until",
        "ring",
        "window",
    )

    def __init__(self, name: str, keys: DependencyKeys) -> None:
        self.name = name
        self.keys = keys
        self.ring: deque[tuple[float, int, int]] = deque()  # (time, calls, failures) per tick
        self.last = (0, 0)  # lifetime (calls, failures) at the last tick
        self.epoch = -1  # the shared window's epoch the ring counts in; -1: not known yet
        self.window = (0, 0)
        self.aggregate: dict[str, Any] = {}
        self.open: str | None = None  # the shared open verdict applied here (its value)
        self.open_until = 0.0  # loop clock
        self.open_delay: float | None = None  # verdict -> applied here, seconds
        self.pause: str | None = None  # the latest pause applied from another replica
        self.pause_until = 0.0
        self.control: tuple[str | None, ...] | None = None  # the latest command seen

    def count(self, status: DependencyStatus, now: float, window: float) -> tuple[int, int]:
        """
        This replica's (calls, failures) over the last *window* seconds, from its lifetime
        counts in *status*: what this tick reports to the shared window.
        """
        totals = (status.calls, status.failures)
        calls = max(0, totals[0] - self.last[0])
        failures = max(0, totals[1] - self.last[1])
        if calls or failures:
            self.ring.append((now, calls, failures))
        self.last = totals
        while self.ring and self.ring[0][0] <= now - window:
            self.ring.popleft()
        self.window = (sum(c for _, c, _ in self.ring), sum(f for _, _, f in self.ring))
        return self.window

    def apply(
        self,
        actor: ReplicaDependency,
        decoded: DependencyReply,
        now: float,
        longest: float,
        *,
        pauser: str,
        replica_id: str,
    ) -> tuple[str, str, str] | None:
        """
        *decoded*: the dependency's reply; *longest*: this replica's own ``open_for``;
        *pauser*: who this replica tells pauses as; *replica_id*: this replica's id.

        Returns:
            Another replica's cluster-wide command to apply here, ``(name, op, reason)``
            (the sync actor applies it after the tick: it awaits the actor), or None.
        """
        epoch = decoded.epoch
        if epoch != self.epoch:
            if self.epoch >= 0:
                # A new shared window (a shared open or a cluster reset): count from now on.
                self.ring.clear()
                self.window = (0, 0)
            self.epoch = epoch
        self.aggregate = decoded.aggregate()
        # The shared open verdict.
        verdict, verdict_ttl = decoded.verdict, decoded.verdict_ttl
        if verdict is not None and verdict_ttl > 0:
            if verdict != self.open:
                # No longer than this replica would open for itself: a verdict planted with a
                # day's TTL does not refuse calls for a day.
                seconds = min(verdict_ttl / 1000, longest)
                actor.shared_open(seconds)
                self.open = verdict
                self.open_until = now + seconds
                self.open_delay = None
                if decoded.clock == "server":
                    self.open_delay = verdict_delay(verdict, time.time())
        elif self.open is not None:
            if self.open_until > now + 0.001:
                actor.shared_open(None)  # lifted early: a cluster-wide reset
            self.open = None
        # A pause another replica was told.
        pause, pause_ttl = decoded.pause, decoded.pause_ttl
        if pause is not None and pause_ttl > 0:
            origin = pause_origin(pause)
            until = now + pause_ttl / 1000
            if origin != pauser and pause != self.pause:
                # at most the dependency's max_retry_after (the actor caps it)
                until = now + actor.shared_pause(pause_ttl / 1000)
                self.pause = pause
            elif origin != pauser:
                until = min(until, self.pause_until)  # as capped when it was applied
            self.pause_until = until
        # The latest cluster-wide command.
        command = decoded.command
        if command[0] is None and self.control is None:
            # Read, and no command yet: the first one sent is news (not a first reading).
            self.control = ()
        if command[0] is None:
            return None
        self.aggregate["control"] = {
            "seq": int(command[0]),
            "op": command[1],
            "reason": command[2],
            "origin": command[3],
        }
        first = self.control is None
        if command == self.control:
            return None
        self.control = command
        op, sender = command[1], command[3]
        # A first reading (this replica just started) applies a standing isolation, whoever
        # sent it (this replica's previous life too, under a fixed replica_id), and no older
        # reset; later, every new command but this replica's own.
        if (op == "isolate") if first else (sender != replica_id):
            return (self.name, op or "", command[2] or "")
        return None
