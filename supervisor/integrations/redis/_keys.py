"""
Key names of one namespace in Redis.

Every key of a namespace starts with ``ringfence:{<namespace>}:``. The braces are a Redis
Cluster *hash tag*: only the part inside them is hashed, so all of a namespace's keys live in
one slot, on one node. That is what lets one pipelined round trip per tick reach all of them,
and lets a script read several of them at once (a script may only touch keys of one slot).

Dependency names are arbitrary strings: they are percent-encoded (``quote(name, safe="")``),
so a name holding ``:`` or ``{`` can neither collide with another key nor move the hash tag.

The layout's version is not part of the names but stored in ``ringfence:{ns}:meta``: replicas
of two versions pointed at one namespace would otherwise share nothing without noticing (two
groups, each admitting the whole rate). A replica that finds another format says so
(``degraded()``) and keeps to local protection.
"""

from __future__ import annotations

from typing import Final, final
from urllib.parse import quote

import attrs

__all__ = ("FORMAT", "DependencyKeys", "Keys", "check_namespace")

#: The key layout and script protocol this module writes; stored in the namespace's meta key.
FORMAT: Final = "1"

_MAX_NAMESPACE: Final = 200


def check_namespace(namespace: object) -> str:
    """
    A namespace usable inside a hash tag: a non-empty ``str`` of at most 200 printable
    characters, without braces or whitespace.

    Raises:
        TypeError: not a ``str``.
        ValueError: empty, too long, or holding a brace, whitespace or a control character.
    """
    if not isinstance(namespace, str):
        msg = f"'namespace' must be a str, got {namespace!r} of type {type(namespace).__name__}"
        raise TypeError(msg)
    bad = [c for c in namespace if c in "{}" or c.isspace() or not c.isprintable()]
    if not namespace or len(namespace) > _MAX_NAMESPACE or bad:
        msg = (
            "'namespace' must be 1 to 200 printable characters without braces or whitespace"
            f" (it becomes a Redis Cluster hash tag), got {namespace!r}"
        )
        raise ValueError(msg)
    return namespace


@final
@attrs.frozen
class DependencyKeys:
    """The keys of one dependency's shared verdicts."""

    health: str  # hash: replica id -> "calls failures epoch" over the replica's window
    open: str  # string "epoch opened_at origin calls failures", with the verdict's TTL
    pause: str  # string "origin seq", with the pause's TTL
    control: str  # hash: seq, op, reason, origin, at (cluster-wide isolate / reset)
    state: str  # hash: epoch (bumped by each shared open and cluster reset)


@final
class Keys:
    """Every key name of one namespace."""

    __slots__ = ("base", "clock", "clocks", "meta", "replicas", "summaries")

    def __init__(self, namespace: str) -> None:
        self.base = f"ringfence:{{{check_namespace(namespace)}}}"
        self.meta = f"{self.base}:meta"  # hash: format
        self.replicas = f"{self.base}:replicas"  # sorted set: replica id -> expiry (ms)
        self.summaries = f"{self.base}:summaries"  # hash: replica id -> JSON summary
        self.clocks = f"{self.base}:clocks"  # hash: replica id -> clock offset (ms), fleet's
        self.clock = f"{self.base}:clock"  # string whose expiry tells Redis's time (no TIME)

    def dependency(self, name: str) -> DependencyKeys:
        base = f"{self.base}:dep:{quote(name, safe='')}"
        return DependencyKeys(
            health=f"{base}:health",
            open=f"{base}:open",
            pause=f"{base}:pause",
            control=f"{base}:control",
            state=f"{base}:state",
        )

    def limit(self, name: str, index: int) -> str:
        """The GCRA state (hash: tat, cfg) of *name*'s rate limit number *index*."""
        return f"{self.base}:limit:{quote(name, safe='')}:{index}"
