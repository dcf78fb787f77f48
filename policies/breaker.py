"""
The circuit breaker: configuration (:class:`Breaker`) and state machine (:class:`CircuitBreaker`).

Theory of operation
-------------------
The machine is sans-I/O in the way h11's ``_state.py`` is: it never reads a clock, never
sleeps and never awaits. Every method that depends on time takes ``now`` (seconds, from any
monotonic clock, the same one for every call) and returns a decision. The runtime asks the
machine, performs the call, and reports the outcome back.

States and what may move between them (:data:`TRANSITIONS` is the whole table)::

    closed ──trip──▶ open ──break_elapsed──▶ half_open ──probes_succeeded──▶ closed
                       ▲                        │
                       └──────probe_failed──────┘
    any state but isolated ──isolate──▶ isolated          (manual; rejects every call)
    closed/open/isolated ──force_half_open──▶ half_open   (manual)
    any state ──reset──▶ closed                           (manual; forgets the history)

Rules this file keeps:

1. *Open → half-open is decided lazily* from ``now`` when a call asks for a permit (Polly's
   ``PermitHalfOpenCircuitTest``). No timer exists; ``retry_after`` is derived.
2. *Half-open admits exactly* ``half_open_probes`` *calls at once.* Every other caller is
   rejected with ``retry_after == 0.0`` until a probe reports back.
3. *Epochs make late outcomes harmless.* Each transition increments :attr:`epoch`; a permit
   carries the epoch it was granted in. An outcome from an older epoch (a call admitted before
   the breaker opened, say) changes nothing here: it cannot re-open the breaker, extend a
   break, or emit a second transition (Polly's ``CircuitStateController`` lists the same
   reasons). The runtime still counts it in its lifetime totals.
4. *An illegal move raises and changes nothing* (h11's ``LocalProtocolError`` rule): manual
   control that conflicts with the state raises :class:`IllegalTransition`.
5. *User code runs before any mutation.* The break-duration callable is called, and its
   answer validated, before the machine changes a field; if it raises, the machine is as it
   was and the runtime treats the exception as a crash of its actor.
6. *Cancellation is not an outcome.* :meth:`CircuitBreaker.on_cancel` returns a half-open
   probe permit without counting anything.
"""

from __future__ import annotations

import datetime
import enum
import math
from collections import deque
from typing import Final, Protocol, TypeVar, final

import attrs

from ._matchers import DEFAULT_RECORD, ErrorFilter, ErrorSpec
from ._validators import check_derived, integer, optional_number, optional_seconds, seconds
from .break_duration import BreakDuration, BreakHistory, as_break_duration
from .classify import ErrorKind
from .window import SlidingWindow

__all__ = (
    "Breaker",
    "CircuitBreaker",
    "IllegalTransition",
    "REJECTED",
    "State",
    "Transition",
    "TRANSITIONS",
)


_T = TypeVar("_T")


class State(enum.StrEnum):
    """Breaker states; ``str`` values, so ``state == "open"`` works."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    ISOLATED = "isolated"


_CLOSED: Final = State.CLOSED
_OPEN: Final = State.OPEN
_HALF_OPEN: Final = State.HALF_OPEN
_ISOLATED: Final = State.ISOLATED

#: (state, event) -> next state. Anything not listed is illegal.
TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (_CLOSED, "trip"): _OPEN,
    (_OPEN, "break_elapsed"): _HALF_OPEN,
    (_HALF_OPEN, "probe_failed"): _OPEN,
    (_HALF_OPEN, "probes_succeeded"): _CLOSED,
    (_CLOSED, "isolate"): _ISOLATED,
    (_OPEN, "isolate"): _ISOLATED,
    (_HALF_OPEN, "isolate"): _ISOLATED,
    (_CLOSED, "force_half_open"): _HALF_OPEN,
    (_OPEN, "force_half_open"): _HALF_OPEN,
    (_ISOLATED, "force_half_open"): _HALF_OPEN,
    (_CLOSED, "reset"): _CLOSED,
    (_OPEN, "reset"): _CLOSED,
    (_HALF_OPEN, "reset"): _CLOSED,
    (_ISOLATED, "reset"): _CLOSED,
}

#: Returned by :meth:`CircuitBreaker.acquire` when the call must be rejected.
REJECTED: Final = -1


class IllegalTransition(RuntimeError):
    """A manual state change that the current state does not allow; nothing was changed."""

    def __init__(self, event: str, state: State) -> None:
        super().__init__(f"cannot {event} a breaker that is {state.value}")
        self.event = event
        self.state = state


@final
@attrs.frozen(kw_only=True)
class Transition:
    """
    One state change, as the runtime logs it and ``status().transitions`` lists it.

    Attributes:
        at: the ``now`` it happened at (seconds on the runtime's clock).
        source, target: the states.
        reason: ``"consecutive_failures"``, ``"failure_ratio"``, ``"break_elapsed"``,
            ``"probe_failed"``, ``"probes_succeeded"``, ``"manual"``, ``"crashed"`` or the
            reason given to ``isolate``.
        break_duration: seconds of the break, for transitions to ``open``; else ``None``.
    """

    at: float
    source: State
    target: State
    reason: str
    break_duration: float | None = None


def _record(value: ErrorSpec) -> ErrorFilter:
    return ErrorFilter.of(value, name="record")


def _ignore(value: ErrorSpec) -> ErrorFilter:
    return ErrorFilter.of(value, name="ignore")


def _break_duration(value: float | datetime.timedelta | BreakDuration) -> BreakDuration:
    # A number (or a timedelta, as seconds) becomes break_duration.constant; a callable stays.
    return as_break_duration(seconds(value) if isinstance(value, datetime.timedelta) else value)


def _check_sampling(_inst: object, _attr: attrs.Attribute[_T], value: _T) -> None:
    # What the ratio window computes from it (window.py's slices, _Ratio's horizon): a
    # subnormal sampling made slices 0.0 wide, and `now % 0.0` crashed the actor (issue 16,
    # item 3, defect 9); a sampling near the largest float overflowed the horizon.
    if isinstance(value, int | float):  # None: the default, 30 s
        check_derived(
            f"'sampling' / {_BUCKETS} (the width of one of the window's time slices)",
            value / _BUCKETS,
            f"{value!r} / {_BUCKETS}",
        )
        check_derived(
            f"'sampling' + 2 * 'sampling' / {_BUCKETS} (how long a failure counts)",
            value + 2 * value / _BUCKETS,
            f"{value!r} + 2 * {value!r} / {_BUCKETS}",
        )


def _check_break_duration(_inst: object, _attr: attrs.Attribute[_T], value: _T) -> None:
    # as_break_duration (the converter) already raised for anything unusable.
    assert callable(value)


# What a breaker not told otherwise uses (Breaker.effective() writes them out).
_THRESHOLD: Final = 5
_MIN_THROUGHPUT: Final = 10
_SAMPLING: Final = 30.0


@final
@attrs.frozen(kw_only=True)
class Breaker:
    """
    Circuit-breaker configuration. Two ways to open, chosen by the arguments given:

    - *consecutive*: ``failure_threshold`` failures in a row (the default, 5);
    - *ratio*: ``failure_ratio`` of the calls within the last ``sampling`` seconds fail, once
      at least ``min_throughput`` calls are in that window (defaults 10 calls, 30 s).

    Args:
        failure_threshold: consecutive failures that open the breaker (``>= 1``).
        failure_ratio: failure ratio, in ``(0, 1]``, at or above which the breaker opens.
        min_throughput: calls the window must hold before the ratio counts (``>= 1``).
        sampling: window length in seconds or a ``timedelta`` (``> 0``), counted in 10
            time buckets (a tenth of it must be a float ``> 0`` too, and 1.2 times it finite).
        half_open_probes: trial calls let through at once in half-open (``>= 1``).
        success_threshold: successful probes needed to close (``>= 1``).
        slow_call: seconds or a ``timedelta``; a call that runs longer than this is a slow
            call, which counts as a failure, once, at the moment it crosses ``slow_call``
            while still running (so a hung dependency opens the breaker while its calls
            hang, in ratio mode entering the window then). Its end counts nothing more: a
            slow call that then succeeds stays one failure; one that then fails (its own
            error, or an attempt timeout) is still one failure, not two; one cancelled stays
            counted. ``status().slow_calls`` counts slow calls, ``failures`` them once each.
        record: errors that count as failures: an exception type, an
            :class:`~policies.ErrorKind` (or its value), a plain predicate ``(exc) -> bool``,
            or a tuple, list or set mixing those (see :meth:`~policies.ErrorFilter.of`).
            Other errors count as successes: the dependency answered. Default: the
            ``transient`` and ``unknown`` kinds (timeouts, ringfence's ``AttemptTimeout``
            included, connection errors, 5xx, overloads, and, failing safe, whatever
            :func:`~policies.classify` cannot classify: a driver's own exception, a
            ``RuntimeError``, an unparsable answer). A 400 or a 401 is the caller's problem,
            a 429 the rate limiter's and a ``permanent`` error no sign of sickness, so none
            of them opens the breaker for every other caller. ``record=Exception`` counts
            everything; ``record="transient"`` leaves ``unknown`` out.
        ignore: errors that never count, either way; the same forms, checked first.
            Default: none.
        break_duration: seconds open before a probe is allowed; a number, a ``timedelta``
            or a callable ``(BreakHistory) -> seconds`` (see :mod:`policies.break_duration`).
            Default 30.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument is out of range, or both ways to open were chosen.
    """

    failure_threshold: int | None = attrs.field(
        default=None, validator=integer(ge=1, optional=True)
    )
    failure_ratio: float | None = attrs.field(default=None, validator=optional_number(gt=0, le=1))
    min_throughput: int | None = attrs.field(default=None, validator=integer(ge=1, optional=True))
    sampling: float | None = attrs.field(
        default=None,
        converter=optional_seconds,
        validator=[optional_number(gt=0), _check_sampling],
    )
    half_open_probes: int = attrs.field(default=1, validator=integer(ge=1))
    success_threshold: int = attrs.field(default=1, validator=integer(ge=1))
    slow_call: float | None = attrs.field(
        default=None, converter=optional_seconds, validator=optional_number(gt=0)
    )
    record: ErrorFilter = attrs.field(default=DEFAULT_RECORD, converter=_record)
    ignore: ErrorFilter = attrs.field(factory=ErrorFilter, converter=_ignore)
    break_duration: BreakDuration = attrs.field(
        factory=lambda: as_break_duration(30.0),
        converter=_break_duration,
        validator=_check_break_duration,
    )

    @failure_ratio.validator
    def _one_way_to_open(self, _attr: object, value: float | None) -> None:
        if value is not None and self.failure_threshold is not None:
            msg = (
                "give either 'failure_threshold' (consecutive failures) or 'failure_ratio'"
                f" (ratio over a window), not both: got failure_threshold="
                f"{self.failure_threshold!r} and failure_ratio={value!r}"
            )
            raise ValueError(msg)
        if value is None and (self.min_throughput is not None or self.sampling is not None):
            msg = (
                "'min_throughput' and 'sampling' only apply with 'failure_ratio'; got"
                f" min_throughput={self.min_throughput!r}, sampling={self.sampling!r}"
            )
            raise ValueError(msg)

    def effective(self) -> Breaker:
        """
        This configuration with the defaults the machine fills in written out: a
        ``failure_threshold`` of 5 when no way to open was given; a ratio breaker's
        ``min_throughput`` (10) and ``sampling`` (30 s). ``ringfence config`` prints it.
        """
        if self.failure_ratio is None:
            threshold = self.failure_threshold
            return attrs.evolve(
                self, failure_threshold=_THRESHOLD if threshold is None else threshold
            )
        return attrs.evolve(
            self,
            min_throughput=_MIN_THROUGHPUT if self.min_throughput is None else self.min_throughput,
            sampling=_SAMPLING if self.sampling is None else self.sampling,
        )

    def is_failure(self, exc: Exception, kind: ErrorKind | None = None) -> bool | None:
        """
        ``True`` if *exc* counts as a failure, ``False`` as a success, ``None``: ignored.

        ``ignore`` is checked first, then ``record``.

        Args:
            exc: the exception the call raised.
            kind: its kind when the caller has classified it already (with the user's
                ``Classifier``); ``None``: the filters classify it if they need to.

        Raises:
            TypeError: a predicate returned an awaitable.
            Exception: whatever a predicate raises, unchanged.
        """
        if self.ignore(exc, kind):
            return None
        return self.record(exc, kind)

    def machine(
        self, now: float, on_transition: _Listener | None = None, *, epoch: int = 0
    ) -> CircuitBreaker:
        """A fresh closed :class:`CircuitBreaker` for this configuration, created at *now*."""
        return CircuitBreaker(self, now=now, on_transition=on_transition, epoch=epoch)


class _Listener(Protocol):
    def __call__(self, transition: Transition, /) -> None: ...


# ---------------------------------------------------------------------------------------------
# Trip rules: when does a closed breaker open? (Polly's CircuitBehavior.) The consecutive rule
# is the machine's own `consecutive_failures` count compared with the threshold; it can only
# trip on a failure, so a success costs one counter reset. The ratio rule is a SlidingWindow
# and decides on every outcome, successes included, as Resilience4j's CircuitBreakerStateMachine
# does after each recorded call: F, F, F, S, S with min_throughput=5 and failure_ratio=0.5
# reaches 5 calls on the last success, at 60 %, and opens there (issue 8). Deciding only on
# failures left that breaker closed until the next failure, against DESIGN.md guarantee 9.

# Time slices in the ratio window (Polly's RollingHealthMetrics uses 10 as well).
_BUCKETS: Final = 10


@final
class _Ratio:
    __slots__ = ("_min_throughput", "_ratio", "horizon", "last_failure", "window")

    def __init__(self, ratio: float, min_throughput: int, sampling: float) -> None:
        self._ratio = ratio
        self._min_throughput = min_throughput
        self.window = SlidingWindow(sampling, _BUCKETS)
        # A failure recorded at t leaves the window by t + sampling + one slice (window.py
        # keeps whole slices); one more slice covers float rounding. Past that horizon the
        # window holds no failure, so a success cannot trip (the ratio is > 0): the success
        # path then skips the window read and pays one float comparison, inlined in
        # CircuitBreaker.on_success (a method call here cost about 50 ns per success).
        self.horizon = sampling + 2 * sampling / _BUCKETS
        self.last_failure = -math.inf

    def would_trip(self, now: float, *, failed: bool) -> bool:
        """Whether one more outcome at *now* would trip the breaker (nothing is recorded)."""
        calls, failures = self.window.counts(now)
        calls += 1
        if failed:
            failures += 1
        # "At or above" (DESIGN.md guarantee 9).
        return calls >= self._min_throughput and failures >= self._ratio * calls

    def record(self, now: float, *, failed: bool) -> None:
        """Count one outcome at *now*."""
        self.window.record(now, failed=failed)
        if failed:
            self.last_failure = now


# ---------------------------------------------------------------------------------------------
# The state machine


@final
class CircuitBreaker:
    """
    The mutable breaker state of one dependency. Not thread-safe and not meant to be: exactly
    one owner (the dependency's actor) calls it, one method at a time.

    Create it with :meth:`Breaker.machine`. ``on_transition`` is called synchronously after
    every state change with the :class:`Transition` record.
    """

    __slots__ = (
        "_closed_since",
        "_on_transition",
        "_probe_successes",
        "_probes",
        "_ratio",
        "_threshold",
        "_window",
        "break_duration",
        "config",
        "consecutive_failures",
        "epoch",
        "open_until",
        "openings",
        "quiet",
        "since",
        "state",
        "transitions",
    )

    def __init__(
        self,
        config: Breaker,
        *,
        now: float,
        on_transition: _Listener | None = None,
        epoch: int = 0,
    ) -> None:
        self.config = config
        self.state: State = _CLOSED
        #: incremented by every transition; permits carry the epoch they were granted in.
        #: A machine replacing another (a crash restart) starts past the old one's epoch, so
        #: permits of the old machine stay late outcomes.
        self.epoch = epoch
        #: ``now`` of the last transition (creation counts).
        self.since = now
        #: when a probe is allowed again (meaningful while open).
        self.open_until = now
        #: seconds of the current or latest opening; ``None`` before the first.
        self.break_duration: float | None = None
        #: openings since the breaker last closed.
        self.openings = 0
        self.consecutive_failures = 0
        #: the latest transitions, oldest first.
        self.transitions: deque[Transition] = deque(maxlen=32)
        self._ratio: _Ratio | None = None
        self._window: SlidingWindow | None = None
        if config.failure_ratio is not None:
            self._ratio = _Ratio(
                config.failure_ratio,
                config.min_throughput if config.min_throughput is not None else _MIN_THROUGHPUT,
                config.sampling if config.sampling is not None else _SAMPLING,
            )
            self._window = self._ratio.window
        threshold = config.failure_threshold
        self._threshold = threshold if threshold is not None else _THRESHOLD
        #: True when reporting a success would change nothing (closed, no failure counted,
        #: no window to record in): the runtime may skip the report. A hint, kept exact.
        #: Never true in ratio mode: every success is recorded in the window, and a success
        #: can trip the breaker there (it may be the call that reaches min_throughput).
        self.quiet = self._window is None
        self._probes = 0
        self._probe_successes = 0
        self._closed_since = now
        self._on_transition = on_transition

    def retire(self) -> None:
        """
        This breaker was replaced (a reconfigure, a crash restart): it guards nothing now.
        Outcomes of calls it admitted may still reach it; they change its own state but no
        longer tell the listener (no transition is published for a breaker nobody uses).
        """
        self._on_transition = None

    # -- asking --------------------------------------------------------------------------------

    def acquire(self, now: float) -> int:
        """
        Ask to run one call. Returns the epoch to report the outcome with, or
        :data:`REJECTED` (then :meth:`retry_after` says for how long).
        """
        if self.state is _CLOSED:
            return self.epoch
        if self.state is _OPEN:
            if now < self.open_until:
                return REJECTED
            self._move("break_elapsed", now, "break_elapsed")
        if self.state is _HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return self.epoch
        return REJECTED

    def retry_after(self, now: float) -> float:
        """Seconds until a call could be admitted: 0 when closed or half-open, inf isolated."""
        if self.state is _OPEN:
            return max(0.0, self.open_until - now)
        if self.state is _ISOLATED:
            return math.inf
        return 0.0

    # -- reporting -----------------------------------------------------------------------------

    def on_success(self, epoch: int, now: float) -> None:
        """Report a successful call admitted in *epoch*; the runtime's hot path."""
        if epoch != self.epoch:
            return  # a late outcome: rule 3
        if self.state is _CLOSED:
            ratio = self._ratio
            if ratio is None:
                self.consecutive_failures = 0
                self.quiet = True
            elif now < ratio.last_failure + ratio.horizon:  # a failure may be in the window
                self._closed_outcome(now, failed=False)
            else:
                self.consecutive_failures = 0
                ratio.window.record(now, failed=False)
        else:
            self.on_outcome(epoch, now, failed=False)

    def on_outcome(self, epoch: int, now: float, *, failed: bool) -> None:
        """Report a call admitted in *epoch* that ended at *now*, failed or not."""
        if epoch != self.epoch:
            return  # a late outcome: rule 3
        if self.state is _CLOSED:
            if failed:
                self._closed_outcome(now, failed=True)
            else:
                self.on_success(epoch, now)
        elif self.state is _HALF_OPEN:
            if failed:
                duration = self._duration(now, from_half_open=True)
                self.consecutive_failures += 1  # _open's move resets the probe count
                self._open(now, "probe_failed", "probe_failed", duration)
                return
            self._probes -= 1
            self.consecutive_failures = 0
            self._probe_successes += 1
            if self._probe_successes >= self.config.success_threshold:
                self._move("probes_succeeded", now, "probes_succeeded")

    def _closed_outcome(self, now: float, *, failed: bool) -> None:
        """Count an outcome while closed and open if the trip rule says so."""
        # Decide, and run the user's break duration, before changing anything (rule 5).
        ratio = self._ratio
        if ratio is not None:
            trips, reason = ratio.would_trip(now, failed=failed), "failure_ratio"
        else:  # consecutive mode; only failures come here
            trips = self.consecutive_failures + 1 >= self._threshold
            reason = "consecutive_failures"
        duration = self._duration(now, from_half_open=False) if trips else 0.0
        if failed:
            self.consecutive_failures += 1
            self.quiet = False
        else:
            self.consecutive_failures = 0
        if ratio is not None:
            ratio.record(now, failed=failed)
        if trips:
            self._open(now, "trip", reason, duration)

    def on_cancel(self, epoch: int) -> None:
        """A call admitted in *epoch* ended without an outcome (cancelled, or ignored)."""
        if epoch == self.epoch and self.state is _HALF_OPEN:
            self._probes -= 1

    # -- manual control ------------------------------------------------------------------------

    def isolate(self, now: float, reason: str = "manual") -> Transition:
        """Hold the breaker open until :meth:`reset` or :meth:`force_half_open`."""
        return self._move("isolate", now, reason)

    def force_half_open(self, now: float, reason: str = "manual") -> Transition:
        """Let ``half_open_probes`` trial calls through now, whatever the break left."""
        return self._move("force_half_open", now, reason)

    def reset(self, now: float, reason: str = "manual") -> Transition:
        """Close the breaker and forget the failures counted so far."""
        return self._move("reset", now, reason)

    # -- moving --------------------------------------------------------------------------------

    def _duration(self, now: float, *, from_half_open: bool) -> float:
        """The next break, from the user's schedule, validated. Changes nothing."""
        history = BreakHistory(
            openings=self.openings + 1,
            previous=self.break_duration,
            closed_for=None if from_half_open else now - self._closed_since,
        )
        duration = self.config.break_duration(history)  # user code: before any mutation
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            msg = (
                f"break_duration {self.config.break_duration!r} returned {duration!r};"
                " it must return a number of seconds"
            )
            raise TypeError(msg)
        if not duration >= 0:
            msg = (
                f"break_duration {self.config.break_duration!r} returned {duration!r};"
                " it must return seconds >= 0"
            )
            raise ValueError(msg)
        return float(duration)

    def _open(self, now: float, event: str, reason: str, duration: float) -> None:
        self.openings += 1
        self.break_duration = duration
        self.open_until = now + duration
        self._move(event, now, reason)

    def _move(self, event: str, now: float, reason: str) -> Transition:
        source = self.state
        target = TRANSITIONS.get((source, event))
        if target is None:
            raise IllegalTransition(event, source)
        self.state = target
        self.quiet = target is _CLOSED and self._window is None
        self.epoch += 1
        self.since = now
        self._probes = 0
        self._probe_successes = 0
        if target is _CLOSED:
            self.openings = 0
            self.consecutive_failures = 0
            self._closed_since = now
            if self._window is not None:
                self._window.clear()
        transition = Transition(
            at=now,
            source=source,
            target=target,
            reason=reason,
            break_duration=self.break_duration if target is _OPEN else None,
        )
        self.transitions.append(transition)
        if self._on_transition is not None:
            self._on_transition(transition)
        return transition
