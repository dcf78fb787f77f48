"""
The dependency actor: one per registered dependency, sole owner of its state.

Theory of operation
-------------------
An actor owns a breaker machine (:mod:`policies.breaker`), lifetime counters, a latency ring,
the bulkhead's in-flight count and its FIFO queue, the gates (a pause, a shared verdict) and
its crash bookkeeping. Nothing else writes them. Messages reach the actor in two ways:

* **Call messages** (admit, outcome, slot release) are synchronous handlers. When the actor is
  idle — always, on a single-threaded event loop, because no handler awaits — the caller's
  task runs the handler inline. That is the same "one message at a time, in order" guarantee
  a mailbox gives, without a scheduler round trip per call (a memory-stream hop costs ~15 µs
  here, the call we protect ~0.1 µs). Outcomes of worker threads are delivered back to the
  event-loop thread first (``from_thread.run_sync``), so handlers never run concurrently.
* **Control messages** (isolate, force_half_open, reset, reconfigure) go through the actor
  task's mailbox (``_runtime.Mailbox``) and are acknowledged when handled.

What awaits lives above: admission waits (``_admission``), the policy loop (``_call``),
streams (``_stream``) and each backend's attempt, which is bound at start (``_backends``)
and also delivers the cut-off (timeout, deadline, shutdown) the actor decides (``_cut``).
Outcomes are counted where they are decided: ``succeeded`` / ``_failed`` / ``released``.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
import types
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

import anyio

from policies import (
    DEFAULT_FALLBACK_ON,
    Breaker,
    Bulkhead,
    CircuitBreaker,
    ErrorKind,
    LatencyWindow,
    Retry,
    State,
    Timeout,
    classify,
    retry_after,
)
from policies import ErrorFilter as _ErrorFilter
from policies import Transition as _Transition
from policies.budget import RetryBudget
from policies.chaos import Chaos
from policies.classify import _kind_or_unknown as _kind_or_unknown
from policies.concurrency import AdaptiveLimit, GradientLimit
from policies.hedge import Hedge, HedgeDelay
from policies.rate_limit import RateLimit

from ._chaos import wrap as wrap_chaos
from ._errors import (
    DEQUEUED,
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    RateLimited,
    SupervisorClosed,
    SupervisorError,
    UnknownDependency,
    _describe,
    all_of,
)
from ._events import (
    ActorCrashed,
    BreakerTransition,
    CallRejected,
    ChaosInjected,
    DependencyPaused,
    Event,
    HedgeStarted,
    LimitChanged,
    RetryBudgetExhausted,
    RetryScheduled,
)
from ._rate_limits import RateLimits
from ._runtime import LazyEvent, Mailbox, Message, Paths, Runtime, Waiter
from ._spec import (
    KIND_ASYNC_GEN,
    KIND_SYNC,
    KIND_WRAPS_ASYNC,
    SYNC_THREADS,
    awaiting,
    bulkhead_size,
    callable_kind,
)
from ._status import DependencyStatus
from ._timers import CLOSED, DEADLINE, TIMEOUT, Deadline, DeadlineHeap, Running

if TYPE_CHECKING:
    from ._events import EventHub

# SYNC_THREADS is re-exported here for the two tests that import it from this module.
__all__ = ("Actor", "SYNC_THREADS")


_CLOSED_STATE: Final = State.CLOSED
_OPEN_STATE: Final = State.OPEN
_ISOLATED_STATE: Final = State.ISOLATED

# A dependency registered without a breaker never trips on its own; manual control still works.
_NO_BREAKER: Final = Breaker(failure_threshold=sys.maxsize)

# ringfence's refusals to call a dependency. Raised out of another dependency's function (a
# nested call: `outer` awaiting `inner` through the supervisor), they were counted where they
# happened, in `inner`; for `outer` they count as neither success nor failure, like an
# ignored exception, so one open breaker does not open the breakers of everything that uses
# it. Timeouts are not refusals: `outer` did not answer in time, and that counts.
_REJECTIONS: Final = (
    BreakerOpen,
    BulkheadFull,
    RateLimited,
    DependencyCrashed,
    SupervisorClosed,
    UnknownDependency,
)
_NO_FAILURE: Final = (None, ErrorKind.UNKNOWN, None)
# The latency window times every attempt until this many have ended, then 1 in 16 (call_start).
_SAMPLE_ALL: Final = 1024
# An attempt's start and end when its latency is not sampled: the clock was not read.
_UNTIMED: Final = math.nan
_NOT_STARTED: Final = "supervisor is not running: enter `async with supervisor:` before calling"
_SHUT_DOWN: Final = "supervisor has shut down: calls are no longer accepted"
_CUT_OFF: Final = "supervisor shut down while the call was running"
_F = TypeVar("_F", bound=Callable[..., Any])


def inline(handler: _F) -> _F:
    """
    Mark a handler whose body the fast-path generator (``_backends/_generate.py``) copies
    into ``_backends/_generated_asyncio.py`` wherever the template calls it. It changes
    nothing at run time. Such a handler is straight-line code: no loop, no await, at most
    one ``return``, the last statement.
    """
    return handler


#: Whether asyncio attempts that need no timer and no thread take the fast path
#: (``_backends/_generated_asyncio.py``, or its template under ``RINGFENCE_INLINE=0``). Tests
#: set it False to send every asyncio attempt through the general path, and compare the
#: paths; it is read when an actor derives its paths.
FAST_PATH = True


@final
class Actor:
    """
    One dependency and all its state.

    Ownership rule: every attribute below is read and written only by this class's methods,
    running in the event-loop thread, one handler at a time (no handler awaits). Nothing
    outside ``_actor.py`` mutates an actor; the supervisor reads snapshots via
    :meth:`status`.
    """

    # Hedging (policies.Hedge): its delay's cache and lifetime counters. Class defaults, set
    # on the instance only once the dependency is hedged: read by hedged calls and status()
    # only. (The policy itself, read by every call of the loop, is an instance attribute: a
    # class attribute read through an instance is not specialised by CPython 3.11.)
    _hedge_delay: HedgeDelay | None = None
    _hedges = 0
    _hedge_wins = 0

    def __init__(
        self,
        name: str,
        fn: Callable[..., object],
        *,
        retry: Retry | None,
        breaker: Breaker | None,
        timeout: Timeout | None,
        bulkhead: Bulkhead | None,
        fallback: Callable[..., object] | None,
        critical: bool,
        fallback_on: _ErrorFilter | None = None,
        classifier: Callable[[BaseException], ErrorKind] | None = None,
        rate_limit: tuple[RateLimit, ...] = (),
        hedge: Hedge | None = None,
        chaos: Chaos | None = None,
    ) -> None:
        self.name = name
        self.critical = critical
        kind = callable_kind(fn, "fn")
        self.fn = awaiting(fn) if kind == KIND_WRAPS_ASYNC else fn
        self._unwrapped = self.fn  # self.fn without Chaos (see _set_chaos)
        self._chaos_policy: Chaos | None = None
        self._is_async = kind != KIND_SYNC
        #: an async generator function: `supervisor.stream()` only (call() says so)
        self.stream_only = kind == KIND_ASYNC_GEN
        self.retry: Retry | None = None
        self.budget: RetryBudget | None = None
        self._max_pause = _MAX_PAUSE
        self._attempt_timeout: float | None = None
        self.total: float | None = None
        self.timeout_policy: Timeout | None = None  # first_item / between_items: _stream.py
        self._bulkhead: Bulkhead | None = None
        self._max_concurrent, self._max_queued = 0, 0  # (derived: see _derive)
        # An adaptive bulkhead's limit (policies.concurrency), fed a sample per outcome, and
        # the limit a LimitChanged event last told.
        self._adaptive: GradientLimit | None = None
        self._limit_told = 0
        # A sync callable's own worker threads, sized to its slots (_backends/_threads.py).
        self._limiter: anyio.CapacityLimiter | None = None
        self.fallback: Callable[..., object] | None = None
        self._fallback_on = _DEFAULT_FALLBACK_ON
        self._classify: Callable[[BaseException], ErrorKind] = (
            classifier if classifier is not None else classify
        )
        self._breaker_config = _NO_BREAKER
        self._slow_after = math.inf
        #: Breaker.slow_call is set: attempts are watched while they run (watch_slow)
        self.watches_slow = False
        # Rate limits, and their turn sources (local or shared: made at start): _admission.py.
        self._rate_limits: tuple[RateLimit, ...] = ()
        self._limits: RateLimits | None = None
        #: The limits and turns of the latest admit_slow, read by its caller as it returns.
        self.admitted: tuple[RateLimits, list[Any]] | None = None
        self._settles = False  # (derived: see _derive)
        # A shared open verdict from other replicas: calls are refused until then (loop clock).
        self._forced_until: float | None = None
        # Streams holding a slot (supervisor/_stream.py): cut off when the supervisor leaves.
        self._streams: dict[Any, None] = {}
        self._simple = self._plain = False  # (derived: see _derive)
        # Given at start: the actor never reaches into the supervisor. What it decides goes
        # out as events (_publish); ringfence's log lines are one listener of them.
        self._runtime: Runtime | None = None
        self._hub: EventHub | None = None
        #: set when the supervisor leaves: every wait above the actor ends on it
        self.closing = LazyEvent()
        self._with_policies: _Entry = self._attempt_closed  # bound at start (_call.py)

        # -- state, owned by the actor ---------------------------------------------------------
        self.accepting = False
        self._closed_reason = _NOT_STARTED
        self.clock: Callable[[], float] = _not_started
        self.rng: random.Random = random.Random()
        self._started = False
        self._in_flight = 0
        self._queue: OrderedDict[Waiter, None] = OrderedDict()
        self._running: dict[Running, None] = {}
        # The fast path's attempts running (asyncio): registered nowhere, shutdown finds this
        # many by walking the tasks (_asyncio_general.cut_fast); those it cut, by their frame:
        # (why, task, the task's cancelling() before the cut).
        self._fast = 0
        self._cut_frames: dict[types.FrameType, tuple[int, asyncio.Task[Any], int]] = {}
        self._timers: DeadlineHeap | None = None
        # When running calls become slow (Breaker.slow_call): made on first use (watch_slow).
        self._slow_timers: DeadlineHeap | None = None
        self._timer_loop: Any = None  # what it runs on: the loop, or the backend's (at start)
        # How a cut-off reaches an attempt, and a fast-path one at shutdown (the backend's).
        self._deliver: Callable[[Running], None] = _not_started
        self._cut_fast: Callable[[], None] = _not_started
        self.attempt: _Entry = self._attempt_closed
        #: what ``Supervisor.call`` awaits: the attempt itself when no retry loop is needed.
        self.entry: _Entry = self._attempt_closed
        # asyncio.current_task, split so the hot path calls a C function directly.
        self._task_of: Callable[[Any], asyncio.Task[Any] | None] = asyncio.current_task
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_scope: Callable[[], Any] = anyio.CancelScope  # trio.CancelScope on trio
        # A call queued for a slot, how it is woken and waited on: the backend's (at start).
        self._new_waiter: Callable[[], Waiter] = _not_started
        self._wake: Callable[[Waiter], None] = _not_started
        self._wait_on: Callable[[Waiter], Any] = _not_started
        self._mailbox: Mailbox | None = None  # control messages (made at start)
        # lifetime counters
        self._failures = 0
        self._rejected = 0
        self._rejected_by: dict[str, int] = {}  # reason -> count; adds up to _rejected
        self._retries = 0
        self._fallbacks = 0
        self._ignored = 0  # exceptions the breaker did not record (a 400, a 429)
        self._cut_offs = 0  # attempts the call's total deadline cut off
        self._result_retries = 0  # retries of a result (retry_on_result), not of an error
        self._chaos: dict[str, int] = {}  # what Chaos injected (error, latency, result) -> count
        self._transitions_to: dict[str, int] = {}  # target state -> lifetime count
        # A rate_limited answer's Retry-After pauses admissions until then (loop clock).
        self._paused_until: float | None = None
        self._pause_rejection_published = False
        self._slots = -1  # the hot path's gate: see slot_free (derived: see _derive)
        # (exception, kind, Retry-After) of the latest failure _failed read: the retry loop,
        # which sees the same exception next with no await in between, reuses them.
        self._last_failure: tuple[BaseException | None, ErrorKind, float | None] = _NO_FAILURE
        self._closed_at = 0.0  # the loop clock when the supervisor left (status() after exit)
        self._slow_calls = 0
        self._errors: dict[str, int] = {}
        # Attempts that ended with an outcome (success, failure, ignored): status().calls.
        self._calls = 0
        # A sample of their latencies (call_start says which): status().latency.
        self._latency = LatencyWindow()
        self._latency_ring = self._latency.ring  # inlined LatencyWindow.record on the hot path
        # Calls below this count are all timed (sys.maxsize: slow-call detection times all).
        self._time_all_below = _SAMPLE_ALL
        # crash bookkeeping
        self._crash_times: deque[float] = deque()
        self._restarts = 0
        self._crash: str | None = None
        self._down: BaseException | None = None
        # log throttling: one rejection event per breaker epoch / per full bulkhead spell
        self._rejections_since_transition = 0
        self._logged_breaker_epoch = -1
        self._bulkhead_full_logged = False
        self.hedge: Hedge | None = None  # policies.Hedge: see _set_hedge

        self._apply(
            {
                "retry": retry,
                "breaker": breaker,
                "timeout": timeout,
                "bulkhead": bulkhead,
                "fallback": fallback,
                "fallback_on": fallback_on,
                "rate_limit": rate_limit,
                "hedge": hedge,
                "chaos": chaos,
            }
        )

    # ==========================================================================================
    # Lifecycle (called by the supervisor)

    def start(self, runtime: Runtime, paths: Paths) -> None:
        """Attach to a running supervisor: a fresh closed breaker, accepting calls."""
        self._runtime = runtime
        self._hub = runtime.hub
        self.closing = runtime.closing
        self._with_policies = types.MethodType(paths.with_policies, self)
        clock = self.clock = runtime.clock
        self.rng = runtime.rng
        self._machine = self._breaker_config.machine(clock(), self._on_transition)
        self._started = True
        self.attempt = types.MethodType(paths.attempt, self)
        self._deliver = types.MethodType(paths.deliver, self)
        if paths.cut_fast is not None:
            self._cut_fast = types.MethodType(paths.cut_fast, self)
        self._new_waiter, self._wake, self._wait_on = paths.signals()
        if paths.cancel_scope is not None:
            self._cancel_scope = paths.cancel_scope()
        if paths.task_of is not None:  # asyncio: one timer heap, the fast path's task getter
            loop = asyncio.get_running_loop()
            self._timers = DeadlineHeap(loop, self._cut)
            self._loop = loop
            self._task_of = paths.task_of()
        self._timer_loop = paths.timer_loop() if paths.timer_loop is not None else self._loop
        if not self._is_async:
            self._limiter = anyio.CapacityLimiter(1)  # (sized by _derive)
        self._set_limits()
        self.accepting = True
        self._derive()
        self._mailbox = Mailbox()

    async def serve(self) -> None:
        """The actor task: handles control messages, one at a time, until shutdown."""
        assert self._mailbox is not None
        await self._mailbox.serve(self._handle_control, lambda: SupervisorClosed(_SHUT_DOWN))

    def close(self) -> None:
        """
        Stop accepting calls: queued calls fail with ``SupervisorClosed``, running attempts
        are cut off (they raise ``SupervisorClosed`` in their callers), sleepers wake.
        """
        self._closed_at = self.clock()
        self.accepting = False
        self._closed_reason = _SHUT_DOWN
        # A call coroutine created while running but first awaited now (`pending = llm(x)`
        # inside `async with`, `await pending` after it) was bound to the attempt path before
        # _derive swaps it for the closed one. The gate (closed too) sends it to _admit_slow,
        # which says SupervisorClosed: zero cost on the hot path, which compares _slots
        # anyway (issue #8, defect 6).
        self._derive()
        self._fail_queued(lambda: SupervisorClosed(DEQUEUED))
        for running in list(self._running):
            if not running.fired:
                self._cut(running, CLOSED)
        if self._fast:
            self._cut_fast()
        for stream in list(self._streams):
            stream.cut_off()
        if self._timers is not None:
            self._timers.close()
        if self._slow_timers is not None:
            self._slow_timers.close()
        if self._mailbox is not None:
            self._mailbox.close()

    # ==========================================================================================
    # The call path

    def retry_scheduled(
        self, attempt: int, delay: float, error: str | None, status: int | None = None
    ) -> None:
        """A retry will follow attempt *attempt* after *delay* (of an *error*, with its HTTP
        *status* if it has one, or a result)."""
        self._retries += 1
        if error is None:
            self._result_retries += 1
        self._publish(RetryScheduled, attempt=attempt, delay=delay, error=error, status=status)

    def budget_refused(self, attempt: int, error: str) -> None:
        """The retry budget refused a retry after attempt *attempt* (of an *error*)."""
        self._publish(RetryBudgetExhausted, attempt=attempt, error=error)

    def fell_back(self) -> None:
        """The fallback answers this call (or stream)."""
        self._fallbacks += 1

    # -- one attempt ----------------------------------------------------------------------------

    async def _not_awaitable(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> object:
        msg = (
            f"{self.name!r} is an async generator function: its calls are streams; use"
            f" `async with supervisor.stream({self.name!r}, ...) as items:` (or the handle's"
            " .stream(...)) instead of awaiting a call"
        )
        raise TypeError(msg)

    async def _attempt_closed(
        self, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
    ) -> object:
        raise SupervisorClosed(self._closed_reason)

    @inline
    def admit_nowait(self, machine: CircuitBreaker) -> int:
        """
        Admission, breaker part: the epoch to run in, or a raised BreakerOpen /
        DependencyCrashed. It raises ``self._reject_...()`` directly, with no local holding
        the error: a local would close a frame -> error -> traceback -> frame cycle that only
        the garbage collector frees (~600 ns per rejection, measured). A closed breaker
        admits without reading the clock.
        """
        if machine.state is _CLOSED_STATE:
            epoch = machine.epoch
        else:
            if self._down is not None:
                raise self._reject_down()
            now = self.clock()
            epoch = machine.acquire(now)
            if epoch < 0:
                raise self._reject_breaker(machine, now)
        return epoch

    @inline
    def call_start(self) -> float:
        """
        When an attempt starts, on the loop clock, if its latency is sampled; else NaN (the
        clock is not read). The sampling rule: every attempt while fewer than 1,024 have
        ended with an outcome, then those starting while that count is a multiple of 16;
        every attempt when ``Breaker.slow_call`` is set (each success is checked against it)
        or the limit is adaptive (each outcome is its sample): ``_derive`` sets the threshold.
        """
        calls = self._calls
        return self.clock() if calls < self._time_all_below or not calls & 15 else _UNTIMED

    @inline
    def call_end(self, start: float) -> float:
        """When an attempt that started at *start* ended: NaN (unread) if its start was."""
        return self.clock() if start == start else start

    @inline
    def slot_free(self) -> bool:
        """
        The hot path's one comparison: a free slot while no gate is down (a pause, a shared
        verdict, rate limits and shutdown hold ``_slots`` at -1: see ``_derive``).
        """
        return self._in_flight < self._slots

    @inline
    def take_slot(self) -> None:
        """Take the slot :meth:`slot_free` found."""
        self._in_flight += 1

    def take_slot_nowait(self) -> bool:
        """:meth:`slot_free`, and then :meth:`take_slot`: True when the slot is taken."""
        if self.slot_free():
            self.take_slot()
            return True
        return False

    def take_free_slot(self) -> bool:
        """A free slot whatever the gates say (admission past them): taken if there is one."""
        if self._in_flight < self._max_concurrent:
            self._in_flight += 1
            return True
        return False

    def paused_now(self) -> bool:
        until = self._paused_until
        return until is not None and self.clock() < until

    def _reject_down(self) -> DependencyCrashed | SupervisorClosed:
        """Admission when the dependency is down (restart limit reached)."""
        assert self._down is not None
        if not self.accepting:  # a call coroutine created before close(): see there
            return SupervisorClosed(self._closed_reason)
        self._count_rejection("down")
        crashed = DependencyCrashed(self.name, self._down, down=True)
        crashed.__cause__ = self._down
        return crashed

    def _reject_bulkhead(
        self, machine: CircuitBreaker, epoch: int
    ) -> BulkheadFull | SupervisorClosed:
        """Admission, bulkhead part, when every slot and queue place is taken."""
        machine.on_cancel(epoch)
        if not self.accepting:  # closed: see close()
            return SupervisorClosed(self._closed_reason)
        self._count_rejection("bulkhead_full")
        if not self._bulkhead_full_logged:
            self._bulkhead_full_logged = True
            self._publish(
                CallRejected,
                reason="bulkhead_full",
                in_flight=self._in_flight,
                queued=len(self._queue),
            )
        latency = self._latency  # the latest call's latency: BulkheadFull.retry_after's hint
        latest = latency.ring[(latency.count - 1) & latency.mask] if latency.count else None
        return BulkheadFull(self.name, self._max_concurrent, self._max_queued, latest)

    def _set_limits(self) -> None:
        """The rate limits' turn sources: local GCRA, or the shared state's (``shared=``)."""
        assert self._runtime is not None
        limits = self._rate_limits
        self._limits = RateLimits(self.name, limits, self._runtime.shared) if limits else None

    def settle(
        self,
        args: tuple[object, ...],
        kwargs: dict[str, Any],
        result: object,
        admitted: tuple[RateLimits, list[Any]] | None,
    ) -> None:
        """True the rate limits that admitted a call up with its real cost
        (``RateLimit.settle``); what it did not use goes back to the turns they gave it."""
        if admitted is not None:
            limits, turns = admitted
            limits.settle(self.clock(), args, kwargs, result, turns)

    def _reject_rate_limited(self, retry_after: float) -> RateLimited:
        self._count_rejection("rate_limited")
        return RateLimited(self.name, retry_after)

    def _derive(self) -> None:
        """
        The one place that sets what the policies, the phase and the gates decide together:
        the bulkhead's size, the entry point, the fast path's flags and the hot path's gate.
        Called whenever one of them changes (start, close, reconfigure, a pause, a shared
        verdict, a sync callable found to be async); nothing else assigns these.
        """
        self._max_concurrent, self._max_queued = bulkhead_size(self._bulkhead, self._is_async)
        if self._adaptive is not None:
            self._max_concurrent = self._adaptive.limit
        if self._limiter is not None and not self._is_async:
            self._limiter.total_tokens = self._max_concurrent
        self._settles = self._limits is not None and self._limits.settles
        # The common case takes one method call: no retry loop, no deadline, no fallback.
        self._simple = self.retry is None and self.total is None and self.fallback is None
        hedged = self.hedge is not None  # its attempts run in tasks of their own: off the fast path
        self._simple = self._simple and not hedged
        # Attempts that need no timer and no thread take the asyncio fast path.
        # Every attempt timed where a reading decides something (slow calls, an adaptive
        # limit's samples); else every one of the first 1,024, then 1 in 16 (call_start).
        timed_all = self.watches_slow or self._adaptive is not None
        self._time_all_below = sys.maxsize if timed_all else _SAMPLE_ALL
        self._plain = (
            FAST_PATH
            and self._is_async
            and self._attempt_timeout is None
            and not self._settles
            and not self.watches_slow  # a timer per attempt (watch_slow)
            and self._adaptive is None  # a sample per outcome (_sample)
            and not hedged  # a race per attempt (_call)
        )
        if not self.accepting:
            self.attempt = self.entry = self._attempt_closed
        elif self.stream_only:
            self.entry = self._not_awaitable
        else:
            self.entry = self.attempt if self._simple else self._with_policies
        # The hot path's gate: open (the slot count) only while nothing else applies.
        if (
            self.accepting
            and self._paused_until is None
            and self._forced_until is None
            and self._limits is None
        ):
            self._slots = self._max_concurrent
        else:
            self._slots = -1

    # -- rate limits ----------------------------------------------------------------------------

    def hold_stream(self, stream: object) -> None:
        """*stream* holds a slot from now on: the supervisor leaving cuts it off."""
        self._streams[stream] = None

    def release_stream(self, stream: object) -> None:
        """*stream* gives its slot back (once)."""
        del self._streams[stream]
        self.release_slot()

    # -- shared state (supervisor.integrations.redis): the replica hooks -----------------------

    @property
    def breaker(self) -> Breaker | None:
        """The configured breaker (``None``: registered without one). A replica hook."""
        config = self._breaker_config
        return None if config is _NO_BREAKER else config

    def limit_sources(self) -> tuple[object, ...]:
        """The turn sources of the rate limits now, in order. A replica hook."""
        return () if self._limits is None else tuple(self._limits.limiters)

    def shared_pause(self, seconds: float) -> float:
        """
        Another replica was told to come back in *seconds*: pause here too, as long as a
        hint of this dependency's own may (``max_retry_after``). Returns the seconds paused.
        """
        seconds = min(seconds, self._max_pause)
        if self.accepting:
            self._pause(seconds, source="cluster")
        return seconds

    def shared_open(self, seconds: float | None) -> None:
        """
        The replicas' shared verdict: refuse calls for *seconds* (``None`` lifts it). Not a
        breaker transition: the local breaker keeps its own state and probes.
        """
        if seconds is None:
            self._forced_until = None
        else:
            self._forced_until = self.clock() + seconds
            failed = self._fail_queued(lambda: BreakerOpen(self.name, seconds, "open"))
            if failed:
                self._count_rejection("shared_open", failed)
        self._derive()

    def _check_forced(self, machine: CircuitBreaker, epoch: int) -> None:
        until = self._forced_until
        assert until is not None
        now = self.clock()
        if now < until:
            if epoch >= 0:
                machine.on_cancel(epoch)
            self._count_rejection("shared_open")
            raise BreakerOpen(self.name, until - now, "open")
        self._forced_until = None
        self._derive()

    def _reject_paused(self, retry_after: float) -> RateLimited:
        self._count_rejection("paused")
        if not self._pause_rejection_published:
            self._pause_rejection_published = True
            self._publish(CallRejected, reason="paused", retry_after=retry_after)
        return RateLimited(self.name, retry_after)

    def _pause(self, seconds: float, source: str = "local") -> None:
        """A rate-limited answer said "come back in *seconds*": pause admissions until then."""
        now = self.clock()
        until = now + seconds
        if self._paused_until is not None and until <= self._paused_until:
            return
        self._paused_until = until
        self._derive()  # every call goes to _admit_slow until the pause ends
        self._publish(
            DependencyPaused,
            at=now,
            retry_after=seconds,
            until=until,
            until_wall=time.time() + seconds,
            source=source,
        )

    def _end_pause(self) -> None:
        self._paused_until = None
        self._pause_rejection_published = False
        self._derive()

    def learned_async(self) -> None:
        """
        The sync callable returned an awaitable: it is an async API behind a plain ``def``.
        From now on it is called on the loop, as ``await fn(...)`` would call it, and what it
        returns is awaited: a thread per call would cost ~50 µs and run loop-bound code (a
        client that looks up its event loop when called) in the wrong thread.
        """
        if not self._is_async:
            self.fn = self._unwrapped = awaiting(self._unwrapped)
            self._is_async = True
            self._set_chaos(self._chaos_policy)
            self._derive()  # no thread left to wait for: unbounded without a bulkhead

    # ==========================================================================================
    # Handlers: admission, outcomes, slots. Synchronous; the only writers of actor state.

    def _end(self, running: Running) -> None:
        running.done = True
        del self._running[running]

    @inline
    def release_slot(self) -> None:
        """Give a slot back: straight to the oldest waiter, if any; else a spell of full ends."""
        if self._queue:
            self._hand_over()
        else:
            self._in_flight -= 1
            self._bulkhead_full_logged = False

    def _hand_over(self) -> None:
        """
        A freed slot passes straight to the oldest waiter (FIFO), which wakes; unless an
        adaptive limit shrank below the calls running: then the slot goes.
        """
        if self._in_flight > self._max_concurrent:
            self._in_flight -= 1
            return
        waiter, _ = self._queue.popitem(last=False)
        waiter.granted = True
        self._wake(waiter)

    @inline
    def record_success(self, machine: CircuitBreaker, epoch: int, start: float, end: float) -> None:
        """
        A success admitted in *epoch* by *machine*: counted, its latency recorded if it was
        sampled (``LatencyWindow.record``; *start*, and *end* on the fast path, are NaN when
        not: see :meth:`call_start`), then a failure to the breaker if slower than
        ``slow_call``, else a success to *machine* (skipped when it is quiet: nothing would
        change). A breaker replaced while the call ran is retired (``_new_machine``): it
        tells nobody, as the new one, to which this is a late outcome, would not.
        """
        self._calls += 1
        if start == start:  # (NaN: not sampled)
            latency = end - start
            window = self._latency
            self._latency_ring[window.count & 1023] = latency
            window.count += 1
            if latency > self._slow_after:
                self._slow(epoch, end)
            elif not machine.quiet:
                machine.on_success(epoch, end)
        elif not machine.quiet:
            machine.on_success(epoch, self.clock())

    def succeeded(self, epoch: int, start: float, end: float, slow: bool = False) -> None:
        """
        A success (of the general and trio attempts, and of streams). *slow*: the call was
        counted slow while it ran (:meth:`crossed_slow`): only its latency is left to record.
        """
        if slow:
            self._call_ended(start, end)
        else:
            self.record_success(self._machine, epoch, start, end)
        if self._adaptive is not None:
            self._sample(start, end, dropped=False)

    def _sample(self, start: float, end: float, *, dropped: bool) -> None:
        """
        An outcome, as a sample of an adaptive limit (``policies.concurrency``): a new limit
        becomes the bulkhead's (``_derive``); more room goes to the queue, less is taken
        back as slots are released (``_hand_over``). A move of more than a tenth since the
        last one told is told (``LimitChanged``), a probe's half limit not.
        """
        adaptive = self._adaptive
        assert adaptive is not None
        limit = adaptive.on_sample(end, end - start, self._in_flight, dropped)
        if limit is None:
            return
        self._derive()
        self._fill_from_queue()
        told = self._limit_told
        if abs(limit - told) > told / 10 and not adaptive.probing:
            self._limit_told = limit
            self._publish(LimitChanged, at=end, previous=told, limit=limit)

    def _slow(self, epoch: int, end: float) -> None:
        """
        A slow call (longer than ``Breaker.slow_call``): a failure to the breaker. Counted
        once per call: when it crosses ``slow_call`` while running (:meth:`crossed_slow`),
        or, if it ended before its timer could fire, by the success it ends with.
        """
        self._failures += 1
        self._slow_calls += 1
        self._report(epoch, end, True)

    def watch_slow(self, running: Running, start: float) -> None:
        """The attempt *running* since *start* becomes slow after ``slow_call``: watch it."""
        timers = self._slow_timers
        if timers is None:
            timers = self._slow_timers = DeadlineHeap(self._timer_loop, self.crossed_slow)
        timers.push(start + self._slow_after, running, len(self._running))

    def crossed_slow(self, running: Running, why: int) -> None:
        """
        The attempt *running* has run longer than ``slow_call`` and is still running (its
        timer, :meth:`watch_slow`): it is a slow call now, a failure to the breaker at this
        moment: a hung dependency opens the breaker while its calls hang (issue 20). Its end
        counts nothing more: a success only records its latency, a failure its error type
        (one failure per call), a cancellation nothing.
        """
        running.slow = True
        try:
            self._slow(running.epoch, self.clock())
        except DependencyCrashed:
            pass  # the actor restarted (or is down) and said so: nobody to raise it to here

    def _failed(
        self, epoch: int, exc: Exception, start: float, end: float, slow: bool = False
    ) -> None:
        name = type(exc).__name__
        self._errors[name] = self._errors.get(name, 0) + 1
        self._call_ended(start, end)
        # A nested call's rejection is neither success nor failure: see _REJECTIONS.
        rejected = all_of(exc, _REJECTIONS)
        kind = ErrorKind.UNKNOWN if rejected else _kind_or_unknown(self._classify, exc)
        hint = None
        if kind is ErrorKind.RATE_LIMITED:
            hint = retry_after(exc, now=time.time(), cap=self._max_pause)
            if hint is not None and hint > 0:
                self._pause(hint)
        self._last_failure = (exc, kind, hint)
        if self._adaptive is not None and not rejected:  # too much: a timeout, a 429
            dropped = kind is ErrorKind.RATE_LIMITED or isinstance(exc, TimeoutError)
            self._sample(start, end, dropped=dropped)
        failed = None if rejected else self._breaker_config.is_failure(exc, kind)
        if not failed and not slow:  # an error, not the dependency's failure (a 400, a 429)
            self._ignored += 1
        if failed is None or slow:  # ignored, or counted already (crossed_slow)
            self.released(epoch)
            return
        if failed:
            self._failures += 1
        self._report(epoch, end, failed)

    def ended_with(
        self, exc: BaseException, epoch: int, start: float, end: float, slow: bool = False
    ) -> None:
        """
        An attempt raised *exc*: count it, unless it is a cancellation or the like. *slow*:
        it was counted slow while it ran (:meth:`crossed_slow`), its one failure.
        """
        if isinstance(exc, Exception):
            self._failed(epoch, exc, start, end, slow)
        else:  # cancellation, KeyboardInterrupt: counts nothing
            self._no_outcome(epoch, start, end, slow)

    def _no_outcome(self, epoch: int, start: float, end: float, slow: bool) -> None:
        """
        An attempt ended without an outcome (cancelled, cut off by shutdown or the call's
        deadline). One counted slow while it ran had one, though: a call, so its latency.
        """
        if slow:
            self._call_ended(start, end)
        self.released(epoch)

    def _call_ended(self, start: float, end: float) -> None:
        """An attempt ended (a failure, or a success counted slow while it ran): counted, its
        latency kept if sampled. ``record_success`` does the same inline (the fast path)."""
        self._calls += 1
        if start == start:  # (NaN: not sampled)
            self._latency.record(end - start)

    def released(self, epoch: int) -> None:
        """The attempt ended without an outcome: give a half-open probe permit back."""
        machine = self._machine
        machine.on_cancel(epoch)

    def _report(self, epoch: int, now: float, failed: bool) -> None:
        machine = self._machine
        try:
            machine.on_outcome(epoch, now, failed=failed)
        except Exception as crash:  # user code (break_duration) or our bug
            raise self._crashed(crash) from crash

    def _cut_off(
        self,
        why: int,
        epoch: int,
        start: float,
        end: float,
        seconds: float,
        slow: bool = False,
    ) -> SupervisorError:
        """
        The error an attempt cut off by us raises; counts it where it counts. *seconds* is
        the limit that cut it (``Running.seconds``: the policy the call started with);
        *slow*: it was counted slow already (:meth:`crossed_slow`).
        """
        error = self.cut_error(why, seconds)
        if why == TIMEOUT:
            self._failed(epoch, error, start, end, slow)
        elif why == DEADLINE:  # it reached the dependency: counted, but not as its failure
            self._cut_offs += 1
            self._no_outcome(epoch, start, end, slow)
        else:
            self._no_outcome(epoch, start, end, slow)
        return error

    def cut_error(self, why: int, seconds: float) -> SupervisorError:
        """
        What a wait we cut off means, for calls' attempts and streams' items alike: the
        supervisor left (``SupervisorClosed``), the call's total deadline passed
        (``DeadlineExceeded``), or the attempt or item took longer than its limit
        (``AttemptTimeout``). Only the last is the dependency's failure: like a caller's
        cancellation, running out of the caller's own budget says nothing about the
        dependency (Polly's outer timeout is not counted either), so it counts nothing.
        """
        if why == CLOSED:
            return SupervisorClosed(_CUT_OFF)
        if why == DEADLINE:
            return DeadlineExceeded(self.name, seconds)
        return AttemptTimeout(self.name, seconds)

    def _cut(self, running: Running, why: int) -> None:
        """Cut a running attempt off (its timer fired, or shutdown): the backend delivers it."""
        running.fired = why
        self._deliver(running)

    @inline
    def fast_started(self) -> None:
        """A fast-path attempt (asyncio) awaits its dependency: one more for shutdown to find."""
        self._fast += 1

    @inline
    def fast_ended(self) -> None:
        """A fast-path attempt (asyncio) ended: see :meth:`fast_started`."""
        self._fast -= 1

    def cut_frame(self, frame: types.FrameType, task: asyncio.Task[Any]) -> None:
        """Shutdown cuts off the fast path's attempt running in *frame*, in *task*."""
        self._cut_frames[frame] = (CLOSED, task, task.cancelling())

    def cut_of(self, frame: types.FrameType) -> tuple[int, asyncio.Task[Any], int] | None:
        """The cut (why, task, its cancelling() before) shutdown made of the fast path's attempt
        in *frame*, as it ends, if it made one."""
        return self._cut_frames.pop(frame, None)

    def _enqueue(self) -> Waiter:
        """A place at the end of the bulkhead's queue (FIFO)."""
        waiter = self._new_waiter()
        self._queue[waiter] = None
        return waiter

    def _leave_queue(self, waiter: Waiter, epoch: int) -> None:
        if waiter in self._queue:
            del self._queue[waiter]
        elif waiter.granted:  # granted, then cancelled before it could run: pass it on
            self.release_slot()
        self.released(epoch)

    def _fail_queued(self, error: Callable[[], SupervisorError]) -> int:
        queue = self._queue
        failed = len(queue)
        while queue:
            waiter, _ = queue.popitem(last=False)
            waiter.error = error()
            self._wake(waiter)
        return failed

    def _reject_breaker(
        self, machine: CircuitBreaker, now: float
    ) -> BreakerOpen | SupervisorClosed:
        """Admission, breaker part, when the breaker rejects the call."""
        if not self.accepting:  # a call coroutine created before close(): see there
            return SupervisorClosed(self._closed_reason)
        reason = _REJECTED_BY_STATE[machine.state]
        self._count_rejection(reason)
        self._rejections_since_transition += 1
        retry_after = machine.retry_after(now)
        if self._logged_breaker_epoch != machine.epoch:
            self._logged_breaker_epoch = machine.epoch
            self._publish(
                CallRejected,
                at=now,
                reason=reason,
                state=machine.state.value,
                retry_after=retry_after,
            )
        # The State member is itself a str; its .value is an enum descriptor (~300 ns).
        return BreakerOpen(self.name, retry_after, machine.state)

    def _on_transition(self, transition: _Transition) -> None:
        """Listener the breaker machine calls after every state change."""
        target = transition.target
        self._transitions_to[target.value] = self._transitions_to.get(target.value, 0) + 1
        if target is _OPEN_STATE or target is _ISOLATED_STATE:
            # Queued callers fail at once when the breaker opens (guarantee 10).
            if target is _ISOLATED_STATE:
                retry_after = math.inf
            else:
                retry_after = transition.break_duration or 0.0
            failed = self._fail_queued(lambda: BreakerOpen(self.name, retry_after, target.value))
            if failed:
                self._count_rejection(_REJECTED_BY_STATE[target], failed)
        self._publish(
            BreakerTransition,
            at=transition.at,
            source=transition.source.value,
            target=target.value,
            reason=transition.reason,
            break_duration=transition.break_duration,
            rejected_since_last=self._rejections_since_transition,
        )
        self._rejections_since_transition = 0

    def _count_rejection(self, reason: str, n: int = 1) -> None:
        self._rejected += n
        self._rejected_by[reason] = self._rejected_by.get(reason, 0) + n

    def _publish(self, event_type: type[Event], at: float | None = None, **fields: Any) -> None:
        """Tell the event hub (and so the log) what the actor decided; *at* defaults to now."""
        now = self.clock()
        if at is None:
            at = now
        event = event_type(dependency=self.name, at=at, wall=time.time() - (now - at), **fields)
        assert self._hub is not None  # (nothing is decided before start)
        self._hub.publish(event)

    # ==========================================================================================
    # Crashes and control

    def _crashed(self, crash: Exception) -> DependencyCrashed:
        """The actor's state can no longer be trusted: restart it, or give up (guarantee 15)."""
        now = self.clock()
        assert self._runtime is not None
        down = not self._runtime.may_restart(self._crash_times, now)
        self._crash = _describe(crash)  # the crash's __str__ is user code: it may raise
        self._publish(
            ActorCrashed, at=now, error=type(crash).__name__, restarts=self._restarts, down=down
        )
        error = DependencyCrashed(self.name, crash, down=down)
        self._fail_queued(lambda: DependencyCrashed(self.name, crash, down=down))
        machine = self._new_machine(now)
        if down:
            self._down = crash
            machine.isolate(now, "crashed")
        else:
            self._restarts += 1
        return error

    async def control(self, op: str, reason: str) -> _Transition:
        """Send a control message to the actor task and wait for its acknowledgement."""
        if not self.accepting or self._mailbox is None:
            raise SupervisorClosed(self._closed_reason)
        transition: _Transition = await self._mailbox.ask(op, reason)
        return transition

    async def reconfigure(self, changes: dict[str, Any]) -> None:
        """Send new policies to the actor task and wait until it has swapped them in."""
        if not self.accepting or self._mailbox is None:
            raise SupervisorClosed(self._closed_reason)
        await self._mailbox.ask("reconfigure", "reconfigure", changes)

    def _new_machine(self, now: float) -> CircuitBreaker:
        """
        A fresh breaker in place of the current one (a reconfigure, a crash restart): closed,
        with the transitions so far, its epochs continuing the old one's (the old one's
        permits become late outcomes). The old one is retired: calls it admitted may still
        report to it, and nobody hears of it.
        """
        old = self._machine
        machine = self._breaker_config.machine(now, self._on_transition, epoch=old.epoch + 1)
        machine.transitions.extend(old.transitions)
        old.retire()
        self._machine = machine
        return machine

    def _reconfigure(self, changes: dict[str, Any]) -> None:
        """
        Swap policies, keeping the counters, the latency window and the calls in flight
        (they finish under the policies they started with).
        """
        self._apply(changes)
        self._derive()
        self._fill_from_queue()

    def _fill_from_queue(self) -> None:
        """More room now (a larger bulkhead): hand it to the queue, oldest first."""
        while self._queue and self._in_flight < self._max_concurrent:
            self._in_flight += 1
            self.release_slot()

    def _apply(self, changes: dict[str, Any]) -> None:
        """
        Install policies: all of them at registration, those given by a reconfigure. A
        budget keeps its counts while its settings stay. A new breaker starts closed with
        empty windows, its epochs continuing the old one's (late outcomes stay late); an
        isolated dependency stays isolated. New rate limits start with full buckets; calls
        waiting for a turn keep theirs.
        """
        if "retry" in changes:
            retry: Retry | None = changes["retry"]
            self.retry = retry
            old_budget = self.budget
            budget_config = retry.budget if retry is not None else None
            if budget_config is None:
                self.budget = None
            elif old_budget is None or old_budget.config != budget_config:
                self.budget = budget_config.machine()
            self._max_pause = retry.max_retry_after if retry is not None else _MAX_PAUSE
        if "timeout" in changes:
            timeout: Timeout | None = changes["timeout"]
            self.timeout_policy = timeout
            self._attempt_timeout = timeout.attempt if timeout is not None else None
            self.total = timeout.total if timeout is not None else None
        if "rate_limit" in changes:
            self._rate_limits = changes["rate_limit"]
            if self._runtime is not None:
                self._set_limits()
        if "fallback" in changes:
            self.fallback = changes["fallback"]
        if "fallback_on" in changes:
            filter_ = changes["fallback_on"]
            self._fallback_on = filter_ if filter_ is not None else _DEFAULT_FALLBACK_ON
        if "bulkhead" in changes:
            bulkhead: Bulkhead | None = changes["bulkhead"]
            self._bulkhead = bulkhead
            adaptive = bulkhead.max_concurrent if bulkhead is not None else None
            if not isinstance(adaptive, AdaptiveLimit):
                self._adaptive = None
            elif self._adaptive is None or self._adaptive.config != adaptive:
                self._adaptive = adaptive.machine()  # a new one starts at its initial limit
                self._limit_told = adaptive.initial
        if "hedge" in changes:
            self._set_hedge(changes["hedge"])
        if "chaos" in changes:
            self._set_chaos(changes["chaos"])
        if "breaker" in changes:
            breaker: Breaker | None = changes["breaker"]
            config = self._breaker_config = breaker if breaker is not None else _NO_BREAKER
            slow_call = config.slow_call
            self._slow_after = slow_call if slow_call is not None else math.inf
            self.watches_slow = slow_call is not None
            if self._started:
                now = self.clock()
                isolated = self._machine.state is _ISOLATED_STATE
                machine = self._new_machine(now)
                if isolated:
                    machine.isolate(now, "reconfigured while isolated")
            else:  # a placeholder until start(): status() reports a blank snapshot
                self._machine = config.machine(0.0, self._on_transition)

    def _handle_control(self, message: Message) -> _Transition | None:
        """A control message, in the actor task: a reconfigure, or a manual transition."""
        if message.op == "reconfigure":
            assert message.payload is not None
            self._reconfigure(message.payload)
            return None
        machine = self._machine
        now = self.clock()
        if message.op == "isolate":
            return machine.isolate(now, message.reason)
        if message.op == "force_half_open":
            transition = machine.force_half_open(now, message.reason)
        else:
            transition = machine.reset(now, message.reason)
        self._down = None  # an operator brought a crashed dependency back
        return transition

    # ==========================================================================================
    # Snapshots

    def status(self) -> DependencyStatus:
        """A frozen snapshot; a blank closed one before the supervisor starts."""
        machine = self._machine  # before start: a placeholder, closed since 0.0 (_apply)
        state = machine.state
        if state is _OPEN_STATE and self.accepting and self.clock() >= machine.open_until:
            state = State.HALF_OPEN  # decided lazily at the next call; report it now
        since = machine.since
        calls = self._calls
        # The loop clock is readable only while the supervisor runs (trio's only on its own
        # loop): after exit the snapshot is as of the moment the supervisor left.
        now = self.clock() if self.accepting else self._closed_at
        wall = time.time()
        open_remaining = None
        if machine.state is _OPEN_STATE and self._started:  # (open_until is on the loop clock)
            open_remaining = max(0.0, machine.open_until - now)
        # Each field read once: status() may run in another thread (a metrics exporter's)
        # while the loop changes these.
        budget, forced, limits = self.budget, self._forced_until, self._limits
        paused_until, limit = self._paused_until, self._max_concurrent
        if paused_until is not None and now >= paused_until:
            paused_until = None
        # What callers got, from the attempts' counts: a retry follows exactly one attempt
        # (of an error or a result) and makes another; a fallback answers exactly one failed
        # attempt. Calls cancelled or cut off by shutdown are in none of these.
        errors = dict(self._errors)
        counted_errors = sum(errors.values())
        raised_attempts = counted_errors + self._rejected + self._cut_offs
        retries, result_retries, fallbacks = self._retries, self._result_retries, self._fallbacks
        return DependencyStatus(
            name=self.name,
            state=state,
            since=since,
            consecutive_failures=machine.consecutive_failures,
            calls=calls,
            failures=self._failures,
            rejected=self._rejected,
            failure_rate=self._failures / calls if calls else 0.0,
            in_flight=self._in_flight,
            queued=len(self._queue),
            limit=limit if limit < sys.maxsize else None,
            break_duration=machine.break_duration,
            transitions=tuple(machine.transitions),
            errors=errors,
            latency=self._latency.percentiles(),
            slow_calls=self._slow_calls,
            restarts=self._restarts,
            crash=self._crash,
            retries=retries,
            fallbacks=fallbacks,
            ignored=self._ignored,
            cut_off=self._cut_offs,
            requests=calls + self._rejected + self._cut_offs - retries,
            successes=calls - counted_errors - result_retries,
            raised=raised_attempts - (retries - result_retries) - fallbacks,
            chaos=dict(self._chaos),
            rejected_by=dict(self._rejected_by),
            paused_until=paused_until,
            pause_remaining=paused_until - now if paused_until is not None else 0.0,
            open_remaining=open_remaining,
            now=now,
            wall=wall,
            since_wall=wall - (now - since) if self._started else 0.0,
            transitions_total=dict(self._transitions_to),
            budget=budget.snapshot(now) if budget is not None and self._started else None,
            rate_limit=() if limits is None else limits.available(now),
            shared_open_until=forced if forced is not None and now < forced else None,
            hedges=self._hedges,
            hedge_wins=self._hedge_wins,
        )

    # ==========================================================================================
    # Hedging (policies.Hedge): the race itself is _call.py's

    def _set_hedge(self, hedge: Hedge | None) -> None:
        if hedge is None and self.hedge is None:
            return  # (never hedged: the class's defaults stand, the instance grows nothing)
        self.hedge = hedge
        self._hedge_delay = hedge.machine() if hedge is not None else None

    def hedge_delay(self) -> float:
        """Seconds a hedged call's attempt may run before a hedge starts, from the latencies."""
        machine = self._hedge_delay
        assert machine is not None  # (asked only by a call that started with a hedge)
        return machine.delay(self._latency)

    def hedged(
        self,
        attempt: int,
        hedge: int,
        delay: float,
        args: tuple[object, ...],
        kwargs: dict[str, Any],
    ) -> bool:
        """
        Whether hedge number *hedge* of attempt *attempt* starts now: only when it is admitted
        at once, as the attempt path will admit it next with no await in between. Never into
        a breaker that is not closed, a pause, a shared open verdict or shutdown; a
        rate-limit turn must be free now and a bulkhead slot too (a hedge never queues); and
        it spends a retry of the budget (none left: no hedge). Counted and published when yes.
        """
        machine = self._machine
        if not self.accepting or self._down is not None or machine.state is not _CLOSED_STATE:
            return False
        now = self.clock()
        paused, forced = self._paused_until, self._forced_until
        if (paused is not None and now < paused) or (forced is not None and now < forced):
            return False
        if self._queue or self._in_flight >= self._max_concurrent:
            return False
        limits = self._limits
        if limits is not None and not limits.ready(now, args, kwargs):
            return False
        budget = self.budget
        if budget is not None and not budget.try_retry(now):
            return False
        self._hedges += 1
        self._publish(HedgeStarted, at=now, attempt=attempt, hedge=hedge, delay=delay)
        return True

    def hedge_won(self) -> None:
        """A hedge, not the attempt it raced, answered the call."""
        self._hedge_wins += 1

    def adopt_stream(self, sibling: object, stream: object) -> None:
        """*stream* takes over the slot *sibling* holds (a hedged stream's winner)."""
        del self._streams[sibling]
        self._streams[stream] = None

    # Fault injection (policies.Chaos): the function is wrapped only while it is configured

    def _set_chaos(self, chaos: Chaos | None) -> None:
        self._chaos_policy = chaos
        self.fn = (
            self._unwrapped
            if chaos is None
            else wrap_chaos(
                self._unwrapped,
                chaos,
                self.chaos_drawn,
                is_async=self._is_async,
                stream=self.stream_only,
            )
        )

    def chaos_drawn(self, chaos: Chaos) -> bool:
        """Whether *chaos* injects into this call: the draw, counted and published."""
        if not chaos.draw(self.rng):
            return False
        injected = chaos.injects()
        for kind in injected:
            self._chaos[kind] = self._chaos.get(kind, 0) + 1
        error = chaos.error
        self._publish(
            ChaosInjected,
            injected=injected,
            latency=chaos.latency,
            error=None if error is None else getattr(error, "__name__", type(error).__name__),
        )
        return True


_DEFAULT_FALLBACK_ON: Final = _ErrorFilter.of(DEFAULT_FALLBACK_ON, name="fallback_on")
# A pause is capped like a Retry-After hint (policies.retry_after's default cap).
_MAX_PAUSE: Final = 300.0

# status().rejected_by / CallRejected.reason of a breaker rejection, by the breaker's state.
_REJECTED_BY_STATE: Final = {
    State.OPEN: "breaker_open",
    State.HALF_OPEN: "breaker_half_open",
    State.ISOLATED: "breaker_isolated",
    State.CLOSED: "breaker_closed",  # pragma: no cover - a closed breaker admits
}


_Entry = Callable[
    [tuple[object, ...], dict[str, Any], Deadline | None], Coroutine[Any, Any, object]
]


def _not_started(*args: Any) -> Any:  # pragma: no cover - replaced at start
    raise SupervisorClosed(_NOT_STARTED)
