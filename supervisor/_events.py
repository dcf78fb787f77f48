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

Publishing costs each subscriber that wants the event's kind an append to its buffer (a
``deque`` with ``maxlen``, which loses the oldest by itself), one more to its lost count when
the buffer was full, and a wake when it waits: no event is built or copied, however many
subscribers there are or however far behind they are. A subscriber's lost count goes onto the
event it reads next (``attrs.evolve``, in the reader's task). That figure is exact: events are
only ever lost from the front of a buffer, so the ones lost since the last read are exactly
those between it and the buffer's front. Subscribers of other kinds are not visited at all:
the hub keeps, per kind, the tuple of subscribers to visit, rebuilt when one comes or goes
(rare), so a publish iterates a tuple nothing can change under it.

The hub holds each subscriber's :class:`_Inbox`, not its :class:`EventStream`: a stream nobody
holds any more is freed, and hands its inbox back to the hub as it goes.

Times: ``at`` is the supervisor's loop clock (what deadlines and ``status()`` use; a mock clock
in tests), ``wall`` is ``time.time()`` for display.
"""

from __future__ import annotations

import logging
import time
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
    "HedgeStarted",
    "DependencyPaused",
    "ChaosInjected",
    "ActorCrashed",
    "LimitChanged",
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
    """
    A retry will be made after ``delay`` seconds; ``error`` is the type name (None: a result),
    ``status`` the failed attempt's HTTP status when its exception carries one (a 503, a 429).
    """

    kind: ClassVar[str] = "retry_scheduled"
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.retry_scheduled")

    attempt: int
    delay: float
    error: str | None
    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class ChaosInjected(Event):
    """
    ``policies.Chaos`` injected into a call: ``injected`` says what (``latency``, then
    ``error`` or ``result``), ``error`` the injected exception's type name, ``latency`` its
    seconds.
    """

    kind: ClassVar[str] = "chaos_injected"
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.chaos_injected")

    injected: tuple[str, ...]
    error: str | None = None
    latency: float | None = None


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
class HedgeStarted(Event):
    """
    A hedge was started: attempt ``attempt`` of a call had not answered after ``delay``
    seconds, so another attempt (its ``hedge``-th) runs beside it; the first success wins.
    """

    kind: ClassVar[str] = "hedge_started"
    _log: ClassVar[tuple[str, str]] = ("debug", "ringfence.hedge_started")

    attempt: int
    hedge: int
    delay: float


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


@final
@attrs.frozen(kw_only=True)
class LimitChanged(Event):
    """
    An adaptive bulkhead limit (``AdaptiveLimit``) moved by more than a tenth since the last
    one told: from ``previous`` to ``limit`` calls at once.
    """

    kind: ClassVar[str] = "limit_changed"
    _log: ClassVar[tuple[str, str]] = ("info", "ringfence.limit_changed")

    previous: int
    limit: int


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
        ChaosInjected,
        ActorCrashed,
        HedgeStarted,
        LimitChanged,
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
class _Inbox:
    """
    What the hub holds for one subscriber: its buffer, the events lost since its last read,
    the reader's wakeup while it waits, whether it has ended.
    """

    __slots__ = ("buffer", "closed", "dropped", "kinds", "size", "subscribed", "wakeup")

    def __init__(self, kinds: frozenset[str] | None, size: int) -> None:
        self.kinds = kinds
        self.size = size
        self.buffer: deque[Event] = deque(maxlen=size)
        self.dropped = 0
        self.wakeup: anyio.Event | None = None
        self.closed = False
        self.subscribed = False

    def end(self) -> None:
        self.closed = True
        wakeup, self.wakeup = self.wakeup, None
        if wakeup is not None:
            wakeup.set()


@final
class EventStream:
    """
    One subscriber's events: ``async for event in stream``. Also an async context manager
    that unsubscribes on exit; leaving an ``async for`` over ``supervisor.events()`` without
    one unsubscribes when the stream is freed (at once on CPython).

    Ends (``StopAsyncIteration``) once the supervisor has left ``async with`` and the buffered
    events have been read.
    """

    __slots__ = ("__weakref__", "_hub", "_inbox")

    def __init__(self, hub: EventHub, inbox: _Inbox) -> None:
        self._hub: EventHub | None = hub
        self._inbox = inbox

    def __del__(self) -> None:
        # Freed without aclose(): give the hub's place back (the hub never holds the stream).
        # This can run in any thread (the cyclic GC runs wherever it is triggered, a worker
        # thread included), so it only appends, atomically; the hub unsubscribes the inbox on
        # its own thread, at its next publish, subscribe or count.
        hub = getattr(self, "_hub", None)
        if hub is not None:
            hub.orphan(self._inbox)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        inbox = self._inbox
        buffer = inbox.buffer
        while not buffer:
            if inbox.closed:
                raise StopAsyncIteration
            wakeup = inbox.wakeup = anyio.Event()
            await wakeup.wait()
        event = buffer.popleft()
        if inbox.dropped:
            # The events lost since the last read were the ones just before this one.
            event = attrs.evolve(event, dropped=event.dropped + inbox.dropped)
            inbox.dropped = 0
        return event

    async def aclose(self) -> None:
        """Unsubscribe; the stream ends after what it has buffered."""
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.unsubscribe(self._inbox)
        self._inbox.end()
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
        return len(self._inbox.buffer)


def _without(inboxes: tuple[_Inbox, ...], inbox: _Inbox) -> tuple[_Inbox, ...]:
    try:
        index = inboxes.index(inbox)
    except ValueError:
        return inboxes
    return inboxes[:index] + inboxes[index + 1 :]


@final
class EventHub:
    """
    Fans events out to listeners (inline) and streams (buffered). Owned by one supervisor;
    everything runs in the event-loop thread.
    """

    __slots__ = ("_closed", "_inboxes", "_listeners", "_orphans", "_targets", "_unfiltered")

    def __init__(self) -> None:
        self._listeners: list[Callable[[Event], None]] = [LogListener()]
        #: every subscriber, in the order they came
        self._inboxes: tuple[_Inbox, ...] = ()
        #: kind -> the subscribers that want it (those with no filter included)
        self._targets: dict[str, tuple[_Inbox, ...]] = dict.fromkeys(EVENT_TYPES, ())
        #: the subscribers with no filter: they get events of any other kind too
        self._unfiltered: tuple[_Inbox, ...] = ()
        #: inboxes whose streams were freed, to unsubscribe on this thread
        self._orphans: list[_Inbox] = []
        self._closed = False

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        if self._orphans:
            self._adopt()
        # An append, a count when full, a wake when waiting: nothing here builds an event.
        for inbox in self._targets.get(event.kind, self._unfiltered):
            buffer = inbox.buffer
            if len(buffer) == inbox.size:
                inbox.dropped += 1  # the append below loses the oldest (maxlen)
            buffer.append(event)
            wakeup = inbox.wakeup
            if wakeup is not None:
                inbox.wakeup = None
                wakeup.set()

    def subscribe(
        self, kinds: Iterable[str | type[Event]] | None = None, buffer: int = 1000
    ) -> EventStream:
        if isinstance(buffer, bool) or not isinstance(buffer, int):
            msg = f"'buffer' must be an int >= 1, got {buffer!r}"
            raise TypeError(msg)
        if buffer < 1:
            msg = f"'buffer' must be an int >= 1, got {buffer!r}"
            raise ValueError(msg)
        inbox = _Inbox(_kinds(kinds), buffer)
        if self._orphans:
            self._adopt()
        if self._closed:
            inbox.end()
        else:
            inbox.subscribed = True
            self._inboxes += (inbox,)
            targets = self._targets
            for kind in targets if inbox.kinds is None else inbox.kinds:
                targets[kind] += (inbox,)
            if inbox.kinds is None:
                self._unfiltered += (inbox,)
        return EventStream(self, inbox)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def _adopt(self) -> None:
        """Unsubscribe the inboxes of the streams freed since the last time."""
        orphans = self._orphans
        while orphans:
            self.unsubscribe(orphans.pop())

    def orphan(self, inbox: _Inbox) -> None:
        """*inbox*'s stream was freed, maybe in another thread: unsubscribe it on ours, soon."""
        self._orphans.append(inbox)

    def unsubscribe(self, inbox: _Inbox) -> None:
        if not inbox.subscribed:
            return
        inbox.subscribed = False
        self._inboxes = _without(self._inboxes, inbox)
        targets = self._targets
        for kind in targets if inbox.kinds is None else inbox.kinds:
            targets[kind] = _without(targets[kind], inbox)
        if inbox.kinds is None:
            self._unfiltered = _without(self._unfiltered, inbox)

    @property
    def subscribers(self) -> int:
        """
        Event streams subscribed now (read-only): each :meth:`subscribe` counts until its
        stream is closed (``aclose()``, or leaving its ``async with``), freed, or the hub
        closes. Listeners (:meth:`add_listener`) are not counted.
        """
        if self._orphans:
            self._adopt()
        return len(self._inboxes)

    def close(self) -> None:
        """The supervisor left: every stream ends after its buffered events."""
        self._closed = True
        inboxes = self._inboxes
        self._inboxes = self._unfiltered = ()
        self._orphans.clear()
        self._targets = dict.fromkeys(EVENT_TYPES, ())
        for inbox in inboxes:
            inbox.subscribed = False
            inbox.end()


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
