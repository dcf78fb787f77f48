"""
What an actor is given when its supervisor starts it, and what shared state may use of a
supervisor.

The actor does not import the supervisor (that was a circle): it receives a :class:`Runtime`
at ``start`` — the loop's clock, the random source, the backend's name, the event that is set
when the supervisor leaves, the event hub, the shared state and the restart policy. The
supervisor builds it from its settings.

Shared state (``Supervisor(shared=...)``, such as ``supervisor.integrations.redis``) uses a
supervisor only through the **replica hooks** below (:class:`Replica`,
:class:`ReplicaDependency`), never through private attributes.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

import anyio
import attrs

if TYPE_CHECKING:
    import random

    from policies import Breaker, RateLimit, Transition

    from ._errors import SupervisorError
    from ._events import Event, EventHub, EventStream
    from ._status import DependencyStatus

__all__ = (
    "LazyEvent",
    "Mailbox",
    "Message",
    "Paths",
    "Replica",
    "ReplicaDependency",
    "Runtime",
    "SharedState",
    "Waiter",
    "backend_clock",
    "current_backend",
    "inline",
)

_F = TypeVar("_F", bound=Callable[..., Any])


def inline(handler: _F) -> _F:
    """
    Mark a handler whose body the fast-path generator (``_backends/_generate.py``) copies
    into ``_backends/_generated_asyncio.py`` wherever the template calls it. It changes
    nothing at run time. Such a handler is straight-line code: no loop, no await, at most
    one ``return``, the last statement.
    """
    return handler


def current_backend() -> str:
    """``"trio"`` or ``"asyncio"``: the hot path uses each one's native cancellation."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    return "asyncio"


def backend_clock(backend: str) -> Callable[[], float]:
    """
    The event loop's own clock: the one anyio's deadlines use, and under trio the one
    MockClock drives. loop.time is ~35 ns; anyio.current_time() ~1 µs. It may be read from
    any thread (``status()`` from a metrics exporter's): trio's ``current_time()`` may not, so
    trio's clock object is read directly (it also works after the run has ended).
    """
    if backend == "trio":
        import trio

        return trio.lowlevel.current_clock().current_time
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic  # what BaseEventLoop.time returns, without its Python frame
    return loop.time


@final
class LazyEvent:
    """An ``anyio.Event`` made only once a backend is running (anyio needs one to build it)."""

    __slots__ = ("_event",)

    def __init__(self, event: anyio.Event | None = None) -> None:
        self._event = event

    def set(self) -> None:
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._event is not None and self._event.is_set()

    async def wait(self) -> None:
        assert self._event is not None
        await self._event.wait()


@final
class Message:
    """A control message for an actor task, acknowledged through ``done``."""

    __slots__ = ("done", "error", "op", "payload", "reason", "result")

    def __init__(self, op: str, reason: str, payload: dict[str, Any] | None) -> None:
        self.op = op
        self.reason = reason
        self.payload = payload
        self.done = anyio.Event()
        self.result: object = None
        self.error: Exception | None = None


@final
class Mailbox:
    """
    How control messages (isolate, force_half_open, reset, reconfigure) reach an actor task
    and are acknowledged: sent by any task, handled one at a time by the actor's ``serve``.
    Made at start (anyio needs a running backend).
    """

    __slots__ = ("_receive", "_send")

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Message](math.inf)

    async def ask(self, op: str, reason: str, payload: dict[str, Any] | None = None) -> Any:
        """Send a message and wait until it is handled: the handler's result, or its error."""
        message = Message(op, reason, payload)
        self._send.send_nowait(message)
        await message.done.wait()
        if message.error is not None:
            raise message.error
        return message.result

    async def serve(
        self, handle: Callable[[Message], object], closed: Callable[[], Exception]
    ) -> None:
        """
        Hand each message to *handle* (what it returns or raises goes back to the sender),
        until :meth:`close`. Cancelled (the body of ``async with supervisor`` raised), nobody
        will handle what is still in the mailbox: it is answered with *closed()* rather than
        leave senders hanging.
        """
        inbox = self._receive
        try:
            async with inbox:
                async for message in inbox:
                    try:
                        message.result = handle(message)
                    except Exception as exc:
                        message.error = exc
                    message.done.set()
        finally:
            while True:
                try:
                    message = inbox.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
                message.error = closed()
                message.done.set()

    def close(self) -> None:
        """No more messages: ``serve`` returns once it has handled those sent."""
        self._send.close()


@final
@attrs.frozen(kw_only=True)
class Runtime:
    """The context a supervisor gives each of its actors at start."""

    clock: Callable[[], float]
    rng: random.Random
    backend: str
    #: set when the supervisor leaves ``async with``: every wait above the actor ends on it
    closing: LazyEvent
    hub: EventHub
    shared: SharedState | None
    #: the restart policy: records a crash at *now* and says whether one more restart is allowed
    may_restart: Callable[[deque[float], float], bool]


@final
@attrs.frozen(kw_only=True)
class Paths:
    """
    The actor's paths that live above it, chosen once per backend and bound to each actor at
    start (``types.MethodType``: called as the actor's own methods, with no extra frame).
    """

    #: ``_call.with_policies``: the loop around attempts (retries, deadline, fallback)
    with_policies: Callable[..., Coroutine[Any, Any, object]]
    #: ``_call.with_hedging``: the same loop for a hedged dependency (each attempt a race)
    with_hedging: Callable[..., Coroutine[Any, Any, object]]
    #: one attempt: admission, the call, its outcome (the backend's)
    attempt: Callable[..., Coroutine[Any, Any, object]]
    #: a call queued for a slot, for the running loop: (a new :class:`Waiter`, wake it, what
    #: to await until it is woken)
    signals: Callable[[], tuple[Callable[[], Any], Callable[[Any], None], Callable[[Any], Any]]]
    #: delivers the cut-off of a running attempt (``Actor.cut``: its timer fired, or shutdown)
    deliver: Callable[..., None]
    #: asyncio: the current-task getter the fast path uses (None elsewhere)
    task_of: Callable[[], Callable[[Any], Any]] | None = None
    #: trio: the cancel scope class of each attempt (None elsewhere)
    cancel_scope: Callable[[], Callable[[], Any]] | None = None
    #: asyncio: at shutdown, cuts off every fast-way attempt of the actor (no ``Running``
    #: record), found by walking every task's await chain
    cut_fast: Callable[..., None] | None = None
    #: trio: what a ``_timers.DeadlineHeap`` schedules its one timer on (asyncio: the loop)
    timer_loop: Callable[[], Any] | None = None


class Waiter(Protocol):
    """
    A call queued for a bulkhead slot, made by the backend (which knows how to wake it): a
    future on asyncio, a parked task on trio. The actor alone writes these.
    """

    #: the slot was handed over to this call
    granted: bool
    #: the call must fail with this instead (the breaker opened, the supervisor left, or a
    #: higher-priority call took its place in a full queue: ``BulkheadFull``)
    error: SupervisorError | None


class ReplicaDependency(Protocol):
    """What shared state may use of one dependency (an actor)."""

    @property
    def name(self) -> str: ...

    @property
    def breaker(self) -> Breaker | None:
        """The dependency's configured breaker (``None``: registered without one)."""

    def limit_sources(self) -> Sequence[object]:
        """The turn sources of its rate limits now (local machines or shared sources)."""

    def status(self) -> DependencyStatus: ...

    def shared_open(self, seconds: float | None) -> None:
        """The replicas' verdict: refuse calls for *seconds*; ``None`` lifts it."""

    def shared_pause(self, seconds: float) -> float:
        """
        Another replica was told to come back in *seconds*: pause here too, at most the
        dependency's ``max_retry_after``. Returns the seconds it pauses for.
        """


class Replica(Protocol):
    """What shared state may use of a supervisor: the replica hooks."""

    def replica_dependencies(self) -> Mapping[str, ReplicaDependency]:
        """The registered dependencies, by name (a snapshot of the registry)."""

    async def wait_closing(self) -> None:
        """Return when the supervisor starts leaving ``async with``."""

    def events(
        self, kinds: Iterable[str | type[Event]] | None = None, buffer: int = 1000
    ) -> EventStream: ...

    async def isolate(self, name: str, *, reason: str = ..., scope: str = ...) -> Transition: ...

    async def reset(self, name: str, *, reason: str = ..., scope: str = ...) -> Transition: ...


class SharedState(Protocol):
    """
    What ``Supervisor(shared=...)`` takes: state shared with other replicas
    (``supervisor.integrations.redis.RedisShared``). The supervisor starts :meth:`run` in its
    task group when it enters and cancels it when it leaves; no call ever awaits it.
    """

    async def run(self, supervisor: Replica, *, task_status: Any = ...) -> None:
        """Sync with the other replicas until cancelled; ``task_status.started()`` at once."""

    def limiter(self, dependency: str, index: int, limit: RateLimit) -> Any:
        """The turn source for *dependency*'s rate limit number *index* (RateLimiter's API)."""

    def degraded(self) -> str | None:
        """Why the shared state cannot be relied on now (health says degraded), or None."""

    def cluster_status(self) -> Mapping[str, Any]:
        """Every live replica's summary and the shared verdicts."""

    async def isolate(self, name: str, reason: str) -> None:
        """Isolate *name* on every replica."""

    async def reset(self, name: str) -> None:
        """Lift a cluster-wide isolation or open verdict of *name*."""
