"""
The dependency actor: one per registered dependency, sole owner of its state.

Theory of operation
-------------------
An actor owns a breaker machine (:mod:`policies.breaker`), a latency ring, the bulkhead's
in-flight count and queue (by priority, FIFO within a level), and what the hot path reads,
flat on itself; its policies as configured are one value (``_spec.Settings``). Its cold
concerns are small objects it owns, each written only by its own methods, which the
actor's handlers call: the counts and crash record (``_ledger``), what it tells the event
hub (``_teller``), the function as calls reach it and Chaos's draws (``_chaos``), a pause
and the shared verdict (``_gates``), the rate limits (``_rate_limits``), the hedges
(``_hedging``), the streams holding a slot (``_holders``). Messages reach it two ways:

* **Call messages** (admit, outcome, slot release) are synchronous handlers, which the
  caller's task runs inline: no handler awaits, so on a single-threaded loop the actor is
  always idle, and that is a mailbox's "one message at a time, in order" without a
  scheduler round trip per call (~15 µs here; the call we protect ~0.1 µs). Worker
  threads' outcomes come back to the loop's thread first (``from_thread.run_sync``).
* **Control messages** (isolate, force_half_open, reset, reconfigure) go through the actor
  task's mailbox (``_runtime.Mailbox``) and are acknowledged when handled.

What awaits lives above: admission waits (``_admission``), the policy loop (``_call``),
streams (``_stream``) and each backend's attempt (``_backends``, bound at start), which
also delivers the cut-offs the actor decides (``_cut``).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import types
from collections.abc import Callable, Coroutine
from typing import Any, Final, final

import anyio

from policies import Breaker, CircuitBreaker, ErrorKind, LatencyWindow, State
from policies import Transition as _Transition
from policies.budget import RetryBudget
from policies.concurrency import GradientLimit
from policies.hedge import Hedge
from policies.timeout import limit_of

from ._chaos import Faults
from ._cutoff import cut_error
from ._errors import (
    DEQUEUED,
    NOT_STARTED,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    SupervisorClosed,
    SupervisorError,
    not_started,
)
from ._events import CallRejected, RetryBudgetExhausted, RetryScheduled
from ._gates import Gates
from ._hedging import Hedging
from ._holders import Holder, Holders
from ._ledger import Ledger
from ._rate_limits import RateLimits
from ._runtime import LazyEvent, Mailbox, Message, Paths, Runtime, Waiter, inline
from ._spec import (
    KIND_ASYNC_GEN,
    KIND_SYNC,
    KIND_WRAPS_ASYNC,
    NO_BREAKER,
    SYNC_THREADS,
    Settings,
    awaiting,
    bulkhead_size,
    callable_kind,
)
from ._status import DependencyStatus, breaker_fields
from ._teller import Teller
from ._timers import CLOSED, DEADLINE, TIMEOUT, Deadline, DeadlineHeap, Running
from ._waiters import Waiters

# SYNC_THREADS is re-exported here for the two tests that import it from this module.
__all__ = ("Actor", "SYNC_THREADS")


_CLOSED_STATE: Final = State.CLOSED
_OPEN_STATE: Final = State.OPEN
_ISOLATED_STATE: Final = State.ISOLATED

_NO_FAILURE: Final = (None, ErrorKind.UNKNOWN, None)
# The latency window times every attempt until this many have ended, then 1 in 16 (call_start).
_SAMPLE_ALL: Final = 1024
# An attempt's start and end when its latency is not sampled: the clock was not read.
_UNTIMED: Final = math.nan
_SHUT_DOWN: Final = "supervisor has shut down: calls are no longer accepted"
#: Whether asyncio attempts that need no timer and no thread take the fast path; tests set it
#: False to compare the paths (every asyncio attempt with a ``Running`` record). Read by _derive.
FAST_PATH = True


@final
class Actor:
    """
    One dependency and all its state. Every attribute is written only by this class's
    methods (a sub-object's state by its own, called from these), in the event-loop
    thread, one handler at a time; the supervisor reads snapshots (:meth:`status`).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., object],
        *,
        critical: bool,
        **policies: Any,
    ) -> None:
        """*policies*: the checked policy arguments of a registration (``_spec.Settings``)."""
        self.name = name
        self.critical = critical
        kind = callable_kind(fn, "fn")
        self.fn = awaiting(fn) if kind == KIND_WRAPS_ASYNC else fn
        self._is_async = kind != KIND_SYNC
        self.stream_only = kind == KIND_ASYNC_GEN  #: an async generator: streams only
        self._settings = Settings()  # the policies as configured (the hot path's part: _apply)
        self.budget: RetryBudget | None = None
        self._adaptive: GradientLimit | None = None  # an adaptive bulkhead's limit (_sample)
        self._limiter: anyio.CapacityLimiter | None = None  # a sync callable's threads
        self._limits: RateLimits | None = None  # the rate limits (made at start): _admission
        #: The limits and turns of the latest admit_slow, read by its caller as it returns.
        self.admitted: tuple[RateLimits, list[Any]] | None = None
        self.streams = Holders()  #: the streams holding a slot: close() cuts them off
        self._runtime: Runtime | None = None  # given at start, with the backend's paths
        self._paths: Paths | None = None
        # Owned objects, each written only by its own methods (see the module's docstring).
        self._tell = Teller(name)
        self._publish = self._tell.publish
        self._ledger = Ledger()
        self._gates = Gates(name, self._ledger, self._publish, self._derive)
        self._faults = Faults(
            self.fn, self._ledger, self._publish, is_async=self._is_async, stream=self.stream_only
        )
        self.hedging: Hedging | None = None  #: a hedged dependency's hedges (_call.py)
        self.closing = LazyEvent()  #: set when the supervisor leaves: every wait ends on it
        self.accepting = False
        self._closed_reason = NOT_STARTED
        self._closed_at = 0.0  # the loop clock when the supervisor left (status() after exit)
        self._down: BaseException | None = None  # the crash that left it down: calls refused
        self.clock: Callable[[], float] = not_started
        self.rng: random.Random = random.Random()
        self._mailbox: Mailbox | None = None  # control messages (made at start)
        # Derived (_derive): the bulkhead's size, the fast path's flags, the hot path's gate
        # (slot_free), a gate being down (Gates.down, for admit_slow), and the ways in:
        # `entry` is what Supervisor.call awaits (the attempt itself when no loop is needed),
        # `policy_loop` _call.py's loop ((args, kwargs, deadline), and a stream's: stream).
        self._max_concurrent, self._max_queued = 0, 0
        self._settles = self._simple = self._plain = self._gated = False
        self._slots = -1
        self.attempt: _Entry = types.MethodType(_closed, self)
        self.entry: _Entry = self.attempt
        self.policy_loop: _Loop = self.attempt
        # The bulkhead: the slots taken, the calls queued for one (the hot path reads the
        # queue's truthiness through this alias), and one rejection event per spell of full.
        self._in_flight = 0
        self._waiters = Waiters()
        self._queue = self._waiters.queue
        self._bulkhead_full_logged = False
        # Running attempts: the general way's records; the fast way's count (shutdown walks
        # the tasks for them: cut_fast), and those it cut, by frame (why, task, cancelling).
        self._running: dict[Running, None] = {}
        self._fast = 0
        self._cut_frames: dict[types.FrameType, tuple[int, asyncio.Task[Any], int]] = {}
        # Made at start: the timers of cut-offs (asyncio) and of slow calls; asyncio's loop
        # and current_task (a C function the hot path calls directly); the cancel scope.
        self._timers: DeadlineHeap | None = None
        self._slow_timers: DeadlineHeap | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_of: Callable[[Any], asyncio.Task[Any] | None] = asyncio.current_task
        self._cancel_scope: Callable[[], Any] = anyio.CancelScope  # trio.CancelScope on trio
        # (exception, kind, Retry-After) of the latest failure, which the retry loop, seeing
        # it next with no await between, reuses.
        self._last_failure: tuple[BaseException | None, ErrorKind, float | None] = _NO_FAILURE
        # Attempts ended with an outcome, a sample of their latencies (call_start says which;
        # the ring for the inlined record), and below which count all are timed.
        self._calls = 0
        self._latency = LatencyWindow()
        self._latency_ring = self._latency.ring
        self._time_all_below = _SAMPLE_ALL
        self._apply(policies)

    # ==========================================================================================
    # Lifecycle (called by the supervisor)

    def start(self, runtime: Runtime, paths: Paths) -> None:
        """Attach to a running supervisor: a fresh closed breaker, accepting calls."""
        self._runtime, self._paths = runtime, paths
        self.closing = runtime.closing
        clock = self.clock = runtime.clock
        self._tell.attach(runtime.hub, clock)
        self._gates.attach(clock)
        self.rng = runtime.rng
        self._faults.attach(runtime.rng)
        self._machine = self._settings.breaker.machine(clock(), self._on_transition)
        self.attempt = types.MethodType(paths.attempt, self)
        self._waiters.attach(paths.signals())
        if paths.cancel_scope is not None:
            self._cancel_scope = paths.cancel_scope()
        if paths.task_of is not None:  # asyncio: one timer heap, the fast path's task getter
            loop = asyncio.get_running_loop()
            self._timers = DeadlineHeap(loop, self._cut)
            self._loop = loop
            self._task_of = paths.task_of()
        timer_loop = paths.timer_loop() if paths.timer_loop is not None else self._loop
        assert timer_loop is not None  # (asyncio's loop, or the backend's)
        self._slow_timers = DeadlineHeap(timer_loop, self.crossed_slow)
        if not self._is_async:
            self._limiter = anyio.CapacityLimiter(1)  # (sized by _derive)
        self._limits = RateLimits.of(
            self.name, self._settings.rate_limit, runtime.shared, self._ledger
        )
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
        are cut off (they raise it in their callers), sleepers wake.
        """
        self._closed_at = self.clock()
        self.accepting = False
        self._closed_reason = _SHUT_DOWN
        # A call coroutine bound to the attempt path before this (`pending = llm(x)` inside
        # `async with`, awaited after it) meets the closed gate: admit_slow refuses it.
        self._derive()
        self._fail_queued(lambda: SupervisorClosed(DEQUEUED), None)
        for running in list(self._running):
            if not running.fired:
                self._cut(running, CLOSED)
        if self._fast and self._paths is not None and self._paths.cut_fast is not None:
            self._paths.cut_fast(self)
        self.streams.cut_all()
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
        self._ledger.retry(of_result=error is None)
        self._publish(RetryScheduled, attempt=attempt, delay=delay, error=error, status=status)

    def budget_refused(self, attempt: int, error: str) -> None:
        """The retry budget refused a retry after attempt *attempt* (of an *error*)."""
        self._publish(RetryBudgetExhausted, attempt=attempt, error=error)

    def fell_back(self) -> None:
        """The fallback answers this call (or stream)."""
        self._ledger.fallback()

    @inline
    def admit_nowait(self, machine: CircuitBreaker) -> int:
        """
        Admission, breaker part: the epoch to run in, or :meth:`_refuse`'s error raised with
        no local holding it (a local makes a frame -> traceback cycle only the GC frees,
        ~600 ns per rejection). A closed breaker admits without reading the clock.
        """
        if machine.state is _CLOSED_STATE:
            epoch = machine.epoch
        else:
            now = self.clock()
            # (shut down, or down: refused without asking the breaker for a permit)
            epoch = machine.acquire(now) if self._down is None and self.accepting else -1
            if epoch < 0:
                raise self._refuse(machine, now)
        return epoch

    @inline
    def call_start(self) -> float:
        """
        When an attempt starts, if its latency is sampled; else NaN (the clock unread). Every
        attempt is sampled while fewer than 1,024 have ended, then 1 in 16; every one with
        ``Breaker.slow_call`` or an adaptive limit (``_derive`` sets the threshold).
        """
        calls = self._calls
        return self.clock() if calls < self._time_all_below or not calls & 15 else _UNTIMED

    @inline
    def call_end(self, start: float) -> float:
        """When an attempt that started at *start* ended: NaN (unread) if its start was."""
        return self.clock() if start == start else start

    @inline
    def attempt_limit(
        self,
        running: Running,
        start: float,
        attempt_timeout: float | None,
        deadline: Deadline | None,
    ) -> float:
        """
        When the attempt *running* since *start* must end: after *attempt_timeout*, or at the
        call's *deadline* if sooner (``policies.timeout.limit_of``). *running* keeps which and
        its seconds, so a reconfigure while it runs changes neither.
        """
        at, by_deadline = limit_of(start, attempt_timeout, deadline)
        if by_deadline:
            assert deadline is not None
            running.reason = DEADLINE
            running.seconds = deadline.total
        else:
            assert attempt_timeout is not None
            running.seconds = attempt_timeout
        return at

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

    def take_free_slot(self) -> bool:
        """A free slot whatever the gates say (admission past them): taken if there is one."""
        if self._in_flight < self._max_concurrent:
            self._in_flight += 1
            return True
        return False

    def give_back_slot(self) -> None:
        """A slot :meth:`take_free_slot` took goes back unused, in the same step (nobody can
        have queued for it meanwhile)."""
        self._in_flight -= 1

    def _reject_bulkhead(self, epoch: int, level: int) -> BulkheadFull:
        """Every slot and queue place is taken and the call, of priority *level*, displaces
        nobody (``Waiters.displace``): refused, and counted."""
        self.released(epoch)
        self._ledger.rejection("bulkhead_full", level=level)
        return self._bulkhead_full(level)

    def _bulkhead_full(self, level: int) -> BulkheadFull:
        """
        The error of a call of priority *level* turned away by the full bulkhead, at once
        (:meth:`_reject_bulkhead`) or displaced from the queue (counted as it resumes,
        :meth:`refused_in_queue`); told once a spell of full.
        """
        if not self._bulkhead_full_logged:
            self._bulkhead_full_logged = True
            self._publish(
                CallRejected,
                reason="bulkhead_full",
                in_flight=self._in_flight,
                queued=len(self._queue),
            )
        # the latest call's latency: BulkheadFull.retry_after's hint
        latest = self._latency.latest()
        return BulkheadFull(self.name, self._max_concurrent, self._max_queued, latest)

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

    def _derive(self) -> None:
        """
        The one place that sets what the policies, the phase and the gates decide together
        (the bulkhead's size, the ways in, the fast path's flags, the hot path's gate), called
        whenever one of them changes; nothing else assigns these.
        """
        self._max_concurrent, self._max_queued = bulkhead_size(
            self._settings.bulkhead, self._is_async
        )
        if self._adaptive is not None:
            self._max_concurrent = self._adaptive.limit
        if self._limiter is not None and not self._is_async:
            self._limiter.total_tokens = self._max_concurrent
        self._settles = self._limits is not None and self._limits.settles
        hedged = self.hedging is not None  # a race per attempt, in tasks: off the fast path
        if self._paths is not None:  # (bound at start: _call.py's loops)
            loop = self._paths.with_hedging if hedged else self._paths.with_policies
            self.policy_loop = types.MethodType(loop, self)
        # The common case takes one method call: no loop, deadline, fallback or hedge.
        self._simple = (
            self.retry is None and self.total is None and self.fallback is None and not hedged
        )
        # Every attempt timed where a reading decides something (call_start).
        timed_all = self.watches_slow or self._adaptive is not None
        self._time_all_below = sys.maxsize if timed_all else _SAMPLE_ALL
        # Attempts that need no timer, thread or sample take the asyncio fast path.
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
            self.attempt = self.entry = types.MethodType(_closed, self)
        elif self.stream_only:
            self.entry = types.MethodType(_not_awaitable, self)
        else:
            self.entry = self.attempt if self._simple else self.policy_loop
        # The hot path's gate: open (the slot count) only while nothing else applies.
        gated = self._gated = self._gates.down()
        if self.accepting and self._limits is None and not gated:
            self._slots = self._max_concurrent
        else:
            self._slots = -1

    # -- streams ---------------------------------------------------------------------------------

    def release_stream(self, stream: Holder) -> None:
        """*stream* gives its slot back (once)."""
        self.streams.release(stream)
        self.release_slot()

    # -- shared state (supervisor.integrations.redis): the replica hooks -----------------------

    @property
    def breaker(self) -> Breaker | None:
        """The configured breaker (``None``: registered without one). A replica hook."""
        config = self._settings.breaker
        return None if config is NO_BREAKER else config

    @property
    def hedge(self) -> Hedge | None:
        """The configured hedge (``None``: not hedged)."""
        return None if self.hedging is None else self.hedging.policy

    def limit_sources(self) -> tuple[object, ...]:
        """The turn sources of the rate limits now, in order. A replica hook."""
        return () if self._limits is None else tuple(self._limits.limiters)

    def shared_pause(self, seconds: float) -> float:
        """Another replica was told to come back in *seconds*: pause here too, as long as a
        hint of our own may (``max_retry_after``). Returns the seconds paused."""
        seconds = min(seconds, self._settings.max_pause)
        if self.accepting:
            self._gates.pause(seconds, source="cluster")
        return seconds

    def shared_open(self, seconds: float | None) -> None:
        """The replicas' shared verdict: refuse calls for *seconds* (``None`` lifts it). Not a
        breaker transition: the local breaker keeps its own state and probes."""
        self._gates.shared_open(seconds)
        if seconds is not None:
            self._fail_queued(lambda: BreakerOpen(self.name, seconds, "open"), "shared_open")

    def learned_async(self) -> None:
        """
        The sync callable returned an awaitable (an async API behind a plain ``def``): from
        now on it is called on the loop and awaited. A thread per call would cost ~50 µs and
        run loop-bound code (a client that finds its event loop when called) in a thread.
        """
        if not self._is_async:
            self.fn = self._faults.learned_async()
            self._is_async = True
            self._derive()  # no thread left to wait for: unbounded without a bulkhead

    # ==========================================================================================
    # Handlers: admission, outcomes, slots. Synchronous; the only writers of actor state.

    @inline
    def _started(self, task: object, base: int, epoch: int) -> Running:
        """
        An attempt admitted in *epoch* starts on the general way: its record (every field set
        here: ``Running`` has no ``__init__``), registered until :meth:`_end` for its timers
        and shutdown. *task*: the asyncio task (trio: the cancel scope); *base*: its
        ``cancelling()`` now (0 on trio).
        """
        running = Running()
        running.task = task
        running.base = base
        running.epoch = epoch
        running.fired = 0
        running.delivered = False
        running.reason = TIMEOUT
        running.seconds = 0.0
        running.done = False
        running.keep_slot = False
        running.slow = False
        self._running[running] = None
        return running

    @inline
    def _end(self, running: Running) -> None:
        """The attempt *running* ended: its timers skip it, shutdown no longer cuts it."""
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
        """A freed slot passes to the next waiter (``Waiters.grant_next``), unless an adaptive
        limit shrank below the calls running: then the slot goes."""
        if self._in_flight > self._max_concurrent:
            self._in_flight -= 1
        else:
            self._waiters.grant_next()

    @inline
    def record_success(self, machine: CircuitBreaker, epoch: int, start: float, end: float) -> None:
        """
        A success admitted in *epoch* by *machine*: counted, its latency recorded if sampled
        (*start*, and *end* on the fast path, are NaN if not), then a failure to the breaker
        if slower than ``slow_call``, else a success to *machine* unless it is quiet. A
        machine replaced while the call ran is retired (``_new_machine``) and tells nobody.
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

    @inline
    def succeeded(self, epoch: int, start: float, end: float, slow: bool = False) -> None:
        """
        A success (the general way's, trio's, a stream's), to the breaker in force now.
        *slow*: counted slow while it ran (:meth:`crossed_slow`): only its latency is left.
        """
        machine = self._machine
        if slow:
            self._call_ended(start, end)
        else:
            self.record_success(machine, epoch, start, end)
        if self._adaptive is not None:
            self._sample(start, end, dropped=False)

    def _sample(self, start: float, end: float, *, dropped: bool) -> None:
        """
        An outcome, as a sample of an adaptive limit (``policies.concurrency``): a new limit
        becomes the bulkhead's (``_derive``); more room goes to the queue, less is taken back
        as slots are released (``_hand_over``).
        """
        adaptive = self._adaptive
        assert adaptive is not None
        limit = adaptive.on_sample(end, end - start, self._in_flight, dropped)
        if limit is None:
            return
        self._derive()
        self._fill_from_queue()
        self._tell.limit_moved(end, limit, adaptive.probing)

    def _slow(self, epoch: int, end: float) -> None:
        """A slow call (longer than ``Breaker.slow_call``): a failure to the breaker, once per
        call: as it crosses ``slow_call`` (:meth:`crossed_slow`), or by the success it ends
        with if that came first."""
        self._ledger.failure(slow=True)
        self._report(epoch, end, True)

    def watch_slow(self, running: Running, start: float) -> None:
        """The attempt *running* since *start* becomes slow after ``slow_call``: watch it."""
        timers = self._slow_timers
        assert timers is not None  # (made at start)
        timers.push(start + self._slow_after, running, len(self._running))

    def crossed_slow(self, running: Running, why: int) -> None:
        """
        The attempt *running* is still running past ``slow_call`` (:meth:`watch_slow`): a
        slow call, a failure to the breaker now, so a hung dependency opens the breaker while
        its calls hang. Its end counts no second failure (a success records its latency).
        """
        running.slow = True
        try:
            self._slow(running.epoch, self.clock())
        except DependencyCrashed:
            pass  # the actor restarted (or is down) and said so: nobody to raise it to here

    def _failed(
        self, epoch: int, exc: Exception, start: float, end: float, slow: bool = False
    ) -> None:
        self._ledger.error(type(exc).__name__)
        self._call_ended(start, end)
        kind, hint, failed, refused = self._settings.judge(exc)
        if hint is not None and hint > 0:
            self._gates.pause(hint)
        self._last_failure = (exc, kind, hint)
        if self._adaptive is not None and not refused:  # too much: a timeout, a 429
            dropped = kind is ErrorKind.RATE_LIMITED or isinstance(exc, TimeoutError)
            self._sample(start, end, dropped=dropped)
        if not failed and not slow:  # an error, not the dependency's failure (a 400, a 429)
            self._ledger.ignore()
        if failed is None or slow:  # ignored, or counted already (crossed_slow)
            self.released(epoch)
            return
        if failed:
            self._ledger.failure()
        self._report(epoch, end, failed)

    def ended_with(
        self, exc: BaseException, epoch: int, start: float, end: float, slow: bool = False
    ) -> None:
        """An attempt raised *exc*: counted, unless a cancellation or the like. *slow*: it was
        counted slow while it ran (:meth:`crossed_slow`), its one failure."""
        if isinstance(exc, Exception):
            self._failed(epoch, exc, start, end, slow)
        else:  # cancellation, KeyboardInterrupt: counts nothing
            self._no_outcome(epoch, start, end, slow)

    def _no_outcome(self, epoch: int, start: float, end: float, slow: bool) -> None:
        """An attempt ended without an outcome (cancelled, cut off by shutdown or the deadline);
        one counted slow while it ran had one, though: a call, so its latency."""
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
        self._machine.on_cancel(epoch)

    def _report(self, epoch: int, now: float, failed: bool) -> None:
        machine = self._machine
        try:
            machine.on_outcome(epoch, now, failed=failed)
        except Exception as crash:  # user code (break_duration) or our bug
            raise self._crashed(crash) from crash

    def cut_off(
        self,
        why: int,
        epoch: int,
        start: float,
        end: float,
        seconds: float,
        slow: bool = False,
        *,
        stream: bool = False,
    ) -> SupervisorError:
        """
        The error an attempt cut off by us raises, counted where it counts: the one place
        that decides it, for calls' attempts and streams' waits alike (*stream*). *seconds*:
        the limit that cut it (``Running.seconds``); *slow*: see :meth:`crossed_slow`.
        """
        error = cut_error(self.name, why, seconds, stream=stream)
        if why == TIMEOUT:
            self._failed(epoch, error, start, end, slow)
        elif why == DEADLINE:  # it reached the dependency: counted, but not as its failure
            self._ledger.cut_off()
            self._no_outcome(epoch, start, end, slow)
        else:
            self._no_outcome(epoch, start, end, slow)
        return error

    def _cut(self, running: Running, why: int) -> None:
        """Cut a running attempt off (its timer fired, or shutdown): the backend delivers it."""
        running.fired = why
        assert self._paths is not None  # (only a started actor's attempts run)
        self._paths.deliver(self, running)

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

    def past_deadline(self, deadline: Deadline) -> DeadlineExceeded:
        """The call's total *deadline* passed before its next attempt could start (it waited in
        the queue, for a turn or a pause, or in a backoff the loop ended late): turned away
        without reaching the dependency (``policies.timeout``), counted as such."""
        self._ledger.rejection("deadline")
        return DeadlineExceeded(self.name, deadline.total)

    def refused_in_queue(self, waiter: Waiter, epoch: int) -> None:
        """A queued call resumes with the error it was woken to (an opening breaker, a shared
        verdict, a crash, shutdown, displacement): its permit goes back, the refusal is
        counted now (``Waiters.refused``)."""
        self.released(epoch)
        refusal = self._waiters.refused(waiter)
        if refusal is not None:
            reason, level = refusal
            self._ledger.rejection(reason, level=level)

    def _leave_queue(self, waiter: Waiter, epoch: int) -> None:
        """A queued call stops waiting: a slot it was granted meanwhile is passed on."""
        if self._waiters.leave(waiter):
            self.release_slot()
        self.released(epoch)

    def _refuse(
        self, machine: CircuitBreaker, now: float
    ) -> BreakerOpen | DependencyCrashed | SupervisorClosed:
        """Admission past a breaker that is not closed, refused (:meth:`admit_nowait`): the
        supervisor has left (see :meth:`close`), the dependency is down, or the breaker said
        no."""
        if not self.accepting:
            return SupervisorClosed(self._closed_reason)
        down = self._down
        if down is not None:
            self._ledger.rejection("down")
            crashed = DependencyCrashed(self.name, down, down=True)
            crashed.__cause__ = down
            return crashed
        reason = _REJECTED_BY_STATE[machine.state]
        self._ledger.rejection(reason)
        retry_after = machine.retry_after(now)
        self._tell.breaker_rejected(machine.epoch, now, reason, machine.state.value, retry_after)
        # The State member is itself a str; its .value is an enum descriptor (~300 ns).
        return BreakerOpen(self.name, retry_after, machine.state)

    def _on_transition(self, transition: _Transition) -> None:
        """Listener the breaker machine calls after every state change."""
        target = transition.target
        self._ledger.transition(target.value)
        if target is _OPEN_STATE or target is _ISOLATED_STATE:
            # Queued callers fail at once when the breaker opens (guarantee 10).
            isolated = target is _ISOLATED_STATE
            retry_after = math.inf if isolated else transition.break_duration or 0.0
            self._fail_queued(
                lambda: BreakerOpen(self.name, retry_after, target.value),
                _REJECTED_BY_STATE[target],
            )
        self._tell.transition(transition)

    def _fail_queued(self, error: Callable[[], SupervisorError], reason: str | None) -> None:
        """Every queued call wakes to an *error* of its own, a refusal for *reason* counted as
        it resumes (:meth:`refused_in_queue`); ``None``: shutdown, counted nowhere."""
        self._waiters.fail_all(error, reason)

    # ==========================================================================================
    # Crashes and control

    def _crashed(self, crash: Exception) -> DependencyCrashed:
        """The actor's state can no longer be trusted: restart it, or give up (guarantee 15)."""
        now = self.clock()
        assert self._runtime is not None
        ledger = self._ledger
        down = ledger.crashed(crash, now, self._runtime.may_restart)
        self._tell.crashed(now, crash, ledger.restarts, down)
        error = DependencyCrashed(self.name, crash, down=down)
        # The queued calls never reached it: refused, as "down" if this crash left it down
        # (as every call refused while down), else "crashed" (restarted under them).
        self._fail_queued(
            lambda: DependencyCrashed(self.name, crash, down=down), "down" if down else "crashed"
        )
        machine = self._new_machine(now)
        if down:
            self._down = crash
            machine.isolate(now, "crashed")
        else:
            ledger.restarted()
        return error

    async def control(self, op: str, reason: str, changes: dict[str, Any] | None = None) -> Any:
        """Send a control message (*op*: isolate, force_half_open, reset, or reconfigure with
        the policies' *changes*) to the actor task; returns its acknowledgement (the
        transition; None for a reconfigure) once handled."""
        if not self.accepting or self._mailbox is None:
            raise SupervisorClosed(self._closed_reason)
        return await self._mailbox.ask(op, reason, changes)

    def _new_machine(self, now: float) -> CircuitBreaker:
        """A fresh closed breaker in place of the current one (a reconfigure, a restart), with
        the transitions so far and epochs continuing the old one's. The old one is retired:
        calls it admitted may still report to it, and nobody hears of it."""
        old = self._machine
        machine = self._settings.breaker.machine(now, self._on_transition, epoch=old.epoch + 1)
        machine.transitions.extend(old.transitions)
        old.retire()
        self._machine = machine
        return machine

    def _reconfigure(self, changes: dict[str, Any]) -> None:
        """Swap policies, keeping the counters, the latency window and the calls in flight
        (they finish under the policies they started with)."""
        self._apply(changes)
        self._derive()
        self._fill_from_queue()

    def _fill_from_queue(self) -> None:
        """More room now (a larger bulkhead): hand it to the queue, highest priority first."""
        while self._queue and self.take_free_slot():
            self.release_slot()  # (to the queue)

    def _apply(self, changes: dict[str, Any]) -> None:
        """
        Install policies (all at registration, a reconfigure's changes: ``_spec.Settings``)
        and copy out, flat, what the hot path reads. A budget or adaptive limit keeps its
        counts while its settings stay; a new breaker starts closed (see _new_machine), but
        an isolated dependency stays isolated; new rate limits start full, and calls waiting
        for a turn keep theirs.
        """
        settings = self._settings = self._settings.changed(changes)
        retry, timeout, config = settings.retry, settings.timeout, settings.breaker
        self.retry, self.fallback, self.timeout_policy = retry, settings.fallback, timeout
        self._attempt_timeout = timeout.attempt if timeout is not None else None
        self.total = timeout.total if timeout is not None else None
        self._slow_after = settings.slow_after
        #: Breaker.slow_call is set: attempts are watched while they run (watch_slow)
        self.watches_slow = config.slow_call is not None
        self.budget = settings.budget_machine(self.budget)
        adaptive = settings.adaptive_machine(self._adaptive)
        if adaptive is not None and adaptive is not self._adaptive:
            self._tell.limit_set(adaptive.limit)  # a fresh one, at its initial limit
        self._adaptive = adaptive
        if "rate_limit" in changes and self._runtime is not None:  # (else: made at start)
            self._limits = RateLimits.of(
                self.name, settings.rate_limit, self._runtime.shared, self._ledger
            )
        if "hedge" in changes:
            hedge = settings.hedge
            self.hedging = (
                None
                if hedge is None
                else Hedging(hedge, self._latency, self._ledger, self._publish)
            )
        if "chaos" in changes:
            self.fn = self._faults.inject(settings.chaos)
        if "breaker" not in changes:
            return
        if self._runtime is not None:  # (started)
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
        """
        A frozen snapshot; a blank closed one before start; after exit, as of the moment the
        supervisor left. It may run in another thread (a metrics exporter's) while the loop
        changes the fields, so each is read once.
        """
        accepting, started = self.accepting, self._runtime is not None
        now = self.clock() if accepting else self._closed_at
        budget, limits, limit = self.budget, self._limits, self._max_concurrent
        return DependencyStatus(
            name=self.name,
            in_flight=self._in_flight,
            queued=len(self._queue),
            limit=limit if limit < sys.maxsize else None,
            latency=self._latency.percentiles(),
            budget=budget.snapshot(now) if budget is not None and started else None,
            rate_limit=() if limits is None else limits.available(now),
            # before start: a placeholder breaker, closed since 0.0 (_apply)
            **breaker_fields(self._machine, now, started=started, accepting=accepting),
            **self._ledger.fields(self._calls),
            **self._gates.fields(now),
        )

    # ==========================================================================================
    # Hedging (policies.Hedge): the race is _call.py's, the delay and counts _hedging.py's

    def hedged(
        self,
        attempt: int,
        hedge: int,
        delay: float,
        args: tuple[object, ...],
        kwargs: dict[str, Any],
    ) -> bool:
        """
        Whether hedge *hedge* of attempt *attempt* starts now: only when the attempt path, next
        with no await between, admits it at once: never into a breaker not closed (a
        dependency left down is isolated), a gate down, shutdown or a full bulkhead (a hedge
        never queues); then the rate limits and the budget decide (:meth:`Hedging.start`).
        """
        if not self.accepting or self._machine.state is not _CLOSED_STATE:
            return False
        now = self.clock()
        if self._gates.shut(now) or self._queue or self._in_flight >= self._max_concurrent:
            return False
        hedging = self.hedging
        assert hedging is not None  # (asked only by a call that started hedged)
        return hedging.start(now, attempt, hedge, delay, self._limits, self.budget, args, kwargs)


# status().rejected_by / CallRejected.reason of a breaker rejection, by the breaker's state.
_REJECTED_BY_STATE: Final = {
    State.OPEN: "breaker_open",
    State.HALF_OPEN: "breaker_half_open",
    State.ISOLATED: "breaker_isolated",
    State.CLOSED: "breaker_closed",  # pragma: no cover - a closed breaker admits
}


async def _closed(
    self: Actor,
    args: tuple[object, ...],
    kwargs: dict[str, Any],
    deadline: Deadline | None,
    stream: object = None,
) -> object:
    """Every call's way, and a stream's (*stream*), while the supervisor is not running."""
    raise SupervisorClosed(self._closed_reason)


async def _not_awaitable(
    self: Actor, args: tuple[object, ...], kwargs: dict[str, Any], deadline: Deadline | None
) -> object:
    """A call's way to an async generator function."""
    msg = (
        f"{self.name!r} is an async generator function: its calls are streams; use"
        f" `async with supervisor.stream({self.name!r}, ...) as items:` (or the handle's"
        " .stream(...)) instead of awaiting a call"
    )
    raise TypeError(msg)


_Entry = Callable[
    [tuple[object, ...], dict[str, Any], Deadline | None], Coroutine[Any, Any, object]
]
_Loop = Callable[..., Coroutine[Any, Any, object]]
