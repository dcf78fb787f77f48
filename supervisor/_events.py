"""
Events: what the dependency actors decide, as frozen records, for any number of subscribers.

Theory of operation
-------------------
An actor publishes an event at the few places it *decides* something worth telling: a breaker
transition, a retry, a rejection (the first one after a transition or of a bulkhead-full
spell), a crash, a pause, a retry refused by the budget. Never per successful call: a
dependency nobody watches pays nothing on its hot path.

:class:`EventHub` fans each event out, synchronously and in order, to

* **listeners**: plain callables run inline. ringfence's own log lines are one
  (:class:`LogListener`), so one place decides what an event is, and events do not depend on
  the application's log level (metrics built on log lines lose what a WARNING filter drops);
* **streams**: :class:`EventStream`, the async iterators ``Supervisor.events()`` returns. Each
  has a bounded buffer; a subscriber that does not keep up loses its *oldest* events and the
  next one it reads carries ``dropped=n``. Publishing never waits for a reader.

Times: ``at`` is the supervisor's loop clock (what deadlines and ``status()`` use; a mock clock
in tests), ``wall`` is ``time.time()`` for display.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import ClassVar, Final, final

import anyio
import anyio.lowlevel
import attrs
import structlog

__all__ = (
    "Event",
    "BreakerTransition",
    "RetryScheduled",
    "CallRejected",
    "RetryBudgetExhausted",
    "DependencyPaused",
    "ActorCrashed",
    "EventStream",
    "EventHub",
    "LogListener",
    "EVENT_TYPES",
)


@attrs.frozen(kw_only=True)
class Event:
    """
    Something a dependency's actor decided.

    Attributes:
        dependency: the dependency's name.
        at: when, on the supervisor's loop clock (seconds).
        wall: when, as ``time.time()`` (seconds since the epoch), for display.
        dropped: events this subscriber lost (its buffer was full) just before this one.
    """

    kind: ClassVar[str] = "event"
    #: the log line this event becomes: structlog event name and level
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.event")

    dependency: str
    at: float
    wall: float
    dropped: int = 0

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable dict of the event, ``kind`` included."""
        data: dict[str, object] = {"kind": self.kind}
        data.update(attrs.asdict(self))
        return data

    def log_lines(self) -> list[tuple[str, str, dict[str, object]]]:
        """
        The log lines this event becomes: ``(level, event name, fields)``. Events carry no
        call arguments or results, so neither can the lines (guarantee 7).
        """
        fields = attrs.asdict(self)
        for key in ("dependency", "at", "wall", "dropped"):
            del fields[key]
        level, name = self._log
        return [(level, name, fields)]


@final
@attrs.frozen(kw_only=True)
class BreakerTransition(Event):
    """The breaker moved from ``source`` to ``target`` (``closed``/``open``/``half_open``/``isolated``)."""

    kind: ClassVar[str] = "breaker_transition"

    source: str
    target: str
    reason: str
    break_duration: float | None
    rejected_since_last: int

    def log_lines(self) -> list[tuple[str, str, dict[str, object]]]:
        # One event name per target, as in Part 1; opening and isolating are warnings.
        [(_, _, fields)] = super().log_lines()
        level = "warning" if self.target in ("open", "isolated") else "info"
        return [(level, _EVENT_OF_TARGET[self.target], fields)]


@final
@attrs.frozen(kw_only=True)
class RetryScheduled(Event):
    """A retry will be made after ``delay`` seconds; ``error`` is the type name (None: a result)."""

    kind: ClassVar[str] = "retry_scheduled"
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.retry_scheduled")

    attempt: int
    delay: float
    error: str | None


@final
@attrs.frozen(kw_only=True)
class CallRejected(Event):
    """
    A call was turned away. Published for the first rejection after a transition (breaker) or
    of a bulkhead-full spell, not for each one: ``status().rejected_by`` counts them all.
    """

    kind: ClassVar[str] = "call_rejected"
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.call_rejected")

    reason: str
    retry_after: float | None = None
    state: str | None = None
    in_flight: int | None = None
    queued: int | None = None

    def log_lines(self) -> list[tuple[str, str, dict[str, object]]]:
        [(level, name, fields)] = super().log_lines()
        return [(level, name, {key: value for key, value in fields.items() if value is not None})]


@final
@attrs.frozen(kw_only=True)
class RetryBudgetExhausted(Event):
    """A retry was not made: the dependency's retry budget was spent."""

    kind: ClassVar[str] = "retry_budget_exhausted"
    _log: ClassVar[tuple[str, str]] = ("warning", "ringfence.retry_budget_exhausted")

    attempt: int
    error: str | None


@final
@attrs.frozen(kw_only=True)
class DependencyPaused(Event):
    """The dependency said "come back later": admissions pause until ``until``."""

    kind: ClassVar[str] = "dependency_paused"
    _log: ClassVar[tuple[str, str]] = ("warning", "ringfence.dependency_paused")

    retry_after: float
    until: float
    until_wall: float
    #: ``local``: this replica was told; ``cluster``: another replica was (shared state).
    source: str = "local"


@final
@attrs.frozen(kw_only=True)
class ActorCrashed(Event):
    """
    The actor's state could not be trusted: restarted, or, past the limit, ``down``.
    ``restarts`` counts the restarts before this crash.
    """

    kind: ClassVar[str] = "actor_crashed"

    error: str
    restarts: int
    down: bool

    def log_lines(self) -> list[tuple[str, str, dict[str, object]]]:
        # Part 1's three lines: the crash, then the restart or the giving up.
        crashed = (
            "error",
            "ringfence.actor_crashed",
            {"error": self.error, "restarts": self.restarts, "down": self.down},
        )
        if self.down:
            return [crashed, ("critical", "ringfence.actor_gave_up", {"error": self.error})]
        return [crashed, ("warning", "ringfence.actor_restarted", {"restarts": self.restarts + 1})]


_EVENT_OF_TARGET: Final = {
    "open": "ringfence.breaker_opened",
    "half_open": "ringfence.breaker_half_opened",
    "closed": "ringfence.breaker_closed",
    "isolated": "ringfence.breaker_isolated",
}

#: kind string -> event class
EVENT_TYPES: Final[dict[str, type[Event]]] = {
    cls.kind: cls
    for cls in (
        BreakerTransition,
        RetryScheduled,
        CallRejected,
        RetryBudgetExhausted,
        DependencyPaused,
        ActorCrashed,
    )
}


def _kinds(kinds: Iterable[str | type[Event]] | None) -> frozenset[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str | type):
        kinds = (kinds,)
    found: set[str] = set()
    for kind in kinds:
        name = kind.kind if isinstance(kind, type) and issubclass(kind, Event) else kind
        if name not in EVENT_TYPES:
            msg = f"unknown event kind {kind!r}; known: {', '.join(sorted(EVENT_TYPES))}"
            raise ValueError(msg)
        found.add(str(name))
    return frozenset(found)


@final
class EventStream:
    """
    One subscriber's events: ``async for event in stream``. Also an async context manager
    that unsubscribes on exit; leaving an ``async for`` over ``supervisor.events()`` without
    one unsubscribes when the stream is freed (at once on CPython).

    Ends (``StopAsyncIteration``) once the supervisor has left ``async with`` and the buffered
    events have been read.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_buffer_size",
        "_closed",
        "_hub",
        "_kinds",
        "_wakeup",
    )

    def __init__(self, hub: EventHub, kinds: frozenset[str] | None, buffer: int) -> None:
        self._hub: EventHub | None = hub
        self._kinds = kinds
        self._buffer: deque[Event] = deque()
        self._buffer_size = buffer
        self._closed = False
        self._wakeup: anyio.Event | None = None

    def _push(self, event: Event) -> None:
        """Called by the hub, in the publisher's task: never waits."""
        if self._kinds is not None and event.kind not in self._kinds:
            return
        buffer = self._buffer
        if len(buffer) >= self._buffer_size:
            # Lose the oldest; the lost count rides on the next event to be read.
            lost = buffer.popleft()
            dropped = 1 + lost.dropped
            if buffer:
                buffer[0] = attrs.evolve(buffer[0], dropped=buffer[0].dropped + dropped)
            else:
                event = attrs.evolve(event, dropped=event.dropped + dropped)
        buffer.append(event)
        self._wake()

    def _end(self) -> None:
        self._closed = True
        self._hub = None
        self._wake()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            wakeup = self._wakeup = anyio.Event()
            await wakeup.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Unsubscribe; the stream ends after what it has buffered."""
        hub = self._hub
        if hub is not None:
            hub._unsubscribe(self)
        self._end()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def pending(self) -> int:
        """Events buffered and not read yet."""
        return len(self._buffer)


@final
class EventHub:
    """
    Fans events out to listeners (inline) and streams (buffered). Owned by one supervisor;
    everything runs in the event-loop thread.
    """

    __slots__ = ("_closed", "_listeners", "_streams")

    def __init__(self) -> None:
        self._listeners: list[Callable[[Event], None]] = [LogListener()]
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._closed = False

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        if self._streams:
            for stream in tuple(self._streams):
                stream._push(event)

    def subscribe(
        self, kinds: Iterable[str | type[Event]] | None = None, buffer: int = 1000
    ) -> EventStream:
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            msg = f"'buffer' must be an int >= 1, got {buffer!r}"
            raise TypeError(msg)
        if buffer < 1:
            msg = f"'buffer' must be an int >= 1, got {buffer!r}"
            raise ValueError(msg)
        stream = EventStream(self, _kinds(kinds), buffer)
        if self._closed:
            stream._end()
        else:
            self._streams.add(stream)
        return stream

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def _unsubscribe(self, stream: EventStream) -> None:
        self._streams.discard(stream)

    @property
    def subscribers(self) -> int:
        """
        Event streams subscribed now (read-only): each :meth:`subscribe` counts until its
        stream is closed (``aclose()``, or leaving its ``async with``), freed, or the hub
        closes. Listeners (:meth:`add_listener`) are not counted.
        """
        return len(self._streams)

    def close(self) -> None:
        """The supervisor left: every stream ends after its buffered events."""
        self._closed = True
        for stream in tuple(self._streams):
            stream._end()
        self._streams.clear()


@final
class LogListener:
    """
    ringfence's log lines, as one listener of the events (DESIGN.md guarantee 16's names and
    fields). Through structlog when the application configured it, else through the stdlib
    logger ``ringfence`` (a library does not print to stdout on its own). Decided per event,
    so configuring logging after the supervisor was built still applies.
    """

    __slots__ = ("_stdlib", "_structlog")

    def __init__(self) -> None:
        self._structlog = structlog.get_logger("ringfence")
        self._stdlib = logging.getLogger("ringfence")

    def __call__(self, event: Event) -> None:
        configured = structlog.is_configured()
        for level, name, fields in event.log_lines():
            if configured:
                getattr(self._structlog, level)(name, dependency=event.dependency, **fields)
                continue
            stdlib_level = _STDLIB_LEVELS[level]
            logger = self._stdlib
            if logger.isEnabledFor(stdlib_level):
                text = " ".join(f"{key}={value!r}" for key, value in fields.items())
                logger.log(
                    stdlib_level,
                    "%s dependency=%r %s",
                    name,
                    event.dependency,
                    text,
                    extra={"ringfence_event": event.to_dict()},
                )


_STDLIB_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def now_wall() -> float:
    """Wall-clock seconds, for display (``Event.wall``)."""
    return time.time()
