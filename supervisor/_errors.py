"""
Errors raised by the supervisor. Every one is a :class:`SupervisorError`::

    SupervisorError
    ├── BreakerOpen          the breaker rejected the call; it never reached the dependency
    ├── BulkheadFull         every slot and queue place was taken; it never reached the dependency
    ├── RateLimited          paused by a Retry-After (or out of rate-limit turns) past the
    │                        call's deadline; it never reached the dependency
    ├── AttemptTimeout       (also TimeoutError) one attempt ran past Timeout.attempt
    ├── DeadlineExceeded     (also TimeoutError) the call ran past Timeout.total
    ├── UnknownDependency    (also LookupError) no dependency has that name
    ├── SupervisorClosed     the supervisor is not running (not entered yet, or left)
    └── DependencyCrashed    the dependency's actor crashed and is restarting or down

The dependency's own exceptions are never wrapped: they propagate unchanged (with a note when
retries were made). ringfence's rejections (BreakerOpen, BulkheadFull, RateLimited, DeadlineExceeded,
SupervisorClosed, UnknownDependency, DependencyCrashed) are never retried.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

__all__ = (
    "SupervisorError",
    "BreakerOpen",
    "BulkheadFull",
    "RateLimited",
    "AttemptTimeout",
    "DeadlineExceeded",
    "UnknownDependency",
    "SupervisorClosed",
    "DependencyCrashed",
)


def _describe(exc: BaseException) -> str:
    """
    ``"TypeName: message"`` (``"TypeName"`` when the message is empty), and never an error.

    A user's exception reaches ringfence's handlers (a crashing break-duration callable, a
    dependency's error), and its ``__str__`` is user code too: one that raises must not turn
    a handler into a crash of its own (issue #8, defect 7). The fallback text follows the
    ``<unprintable ... object>`` form Python 2's traceback module used.
    """
    kind = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = f"<unprintable {kind} object>"
    return f"{kind}: {text}" if text else kind


def _safe_repr(value: object) -> str:
    """``repr(value)``, or a placeholder when the user's ``__repr__`` raises."""
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__} object>"


class SupervisorError(Exception):
    """Base class of every error ringfence itself raises."""


class BreakerOpen(SupervisorError):
    """
    The dependency's breaker is open, isolated, or half-open with every probe taken: the call
    was rejected at once, without reaching the dependency or waiting in its queue.

    Attributes:
        dependency: the dependency's name.
        retry_after: seconds until a probe may be let through: the rest of the break when
            open, ``0.0`` in half-open with every probe busy, ``math.inf`` when isolated.
        state: ``"open"``, ``"half_open"`` or ``"isolated"``.
    """

    # No Python __init__: BaseException keeps the arguments in .args (in C) and the attributes
    # read them back. A Python __init__ setting three attributes cost ~550 ns per rejection
    # (a frame, and a __dict__ for the instance), on the path an open breaker exists to make
    # cheap; formatting the message eagerly cost ~600 ns more. __str__ formats it when asked.
    if TYPE_CHECKING:

        def __init__(self, dependency: str, retry_after: float, state: str = "open") -> None: ...

    @property
    def dependency(self) -> str:
        """The dependency's name."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Seconds until a probe may be let through (``0.0`` half-open, ``inf`` isolated)."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def state(self) -> str:
        """``"open"``, ``"half_open"`` or ``"isolated"``."""
        return self.args[2] if len(self.args) > 2 else "open"

    def __str__(self) -> str:
        retry_after = self.retry_after
        when = "until reset" if math.isinf(retry_after) else f"retry after {retry_after:.3f}s"
        return f"breaker for {self.dependency!r} is {self.state}: {when}"


class RateLimited(SupervisorError):
    """
    The dependency is paused — it answered "rate limited" with a Retry-After — and the pause
    would end past the call's total deadline: the call was rejected at once, without reaching
    the dependency. Callers whose deadline allows it wait for the pause instead. Never
    retried; the fallback may answer it.

    Attributes:
        dependency: the dependency's name.
        retry_after: seconds until the dependency takes calls again.
    """

    if TYPE_CHECKING:

        def __init__(self, dependency: str, retry_after: float) -> None: ...

    @property
    def dependency(self) -> str:
        """The dependency's name."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Seconds until the dependency takes calls again."""
        return self.args[1]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"{self.dependency!r} is rate limited: retry after {self.retry_after:.3f}s"


class BulkheadFull(SupervisorError):
    """
    Every concurrency slot and every queue place of the dependency was taken: the call was
    rejected at once, without reaching the dependency. Unlike :class:`BreakerOpen`, this says
    nothing about the dependency's health, only about its load.

    Attributes:
        dependency, max_concurrent, max_queued: the dependency and its bulkhead.
        retry_after: a hint, seconds: the latest call's latency (a slot is likely free again
            within one call's time), or ``None`` before any call ended.
    """

    if TYPE_CHECKING:  # no Python __init__, for the reason BreakerOpen gives

        def __init__(
            self,
            dependency: str,
            max_concurrent: int,
            max_queued: int,
            retry_after: float | None = None,
        ) -> None: ...

    @property
    def dependency(self) -> str:
        """The dependency's name."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def max_concurrent(self) -> int:
        """The bulkhead's concurrency limit."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def max_queued(self) -> int:
        """The bulkhead's queue length."""
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float | None:
        """Seconds a slot may take to free: the latest call's latency (``None``: none yet)."""
        return self.args[3] if len(self.args) > 3 else None

    def __str__(self) -> str:
        return (
            f"bulkhead for {self.dependency!r} is full:"
            f" {self.max_concurrent} running and {self.max_queued} queued"
        )


class AttemptTimeout(SupervisorError, TimeoutError):
    """
    One attempt ran longer than ``Timeout.attempt`` and was cancelled (a sync callable's
    thread cannot be stopped: it runs on, holding its bulkhead slot, until it really ends).
    Retried when ``Retry.retry_on`` matches it, as the default does.
    """

    def __init__(self, dependency: str, timeout: float) -> None:
        self.dependency = dependency
        self.timeout = timeout
        super().__init__(f"attempt on {dependency!r} timed out after {timeout:g}s")


class DeadlineExceeded(SupervisorError, TimeoutError):
    """
    The call's total deadline (``Timeout.total``, over queueing, attempts and backoff sleeps)
    passed, or the next retry's backoff would have ended past it. Chains the last attempt's
    error as ``__cause__`` when there was one. Never retried.
    """

    def __init__(self, dependency: str, total: float) -> None:
        self.dependency = dependency
        self.total = total
        super().__init__(f"call to {dependency!r} exceeded its {total:g}s deadline")


class UnknownDependency(SupervisorError, LookupError):
    """No dependency is registered under that name; the message lists the ones that are."""

    def __init__(self, name: object, registered: Iterable[str]) -> None:
        self.name = name
        self.registered = tuple(registered)
        known = ", ".join(repr(n) for n in self.registered) or "none"
        super().__init__(f"no dependency named {_safe_repr(name)}; registered: {known}")

    def __str__(self) -> str:  # LookupError/KeyError-style repr quoting is not wanted here
        return str(self.args[0])


class SupervisorClosed(SupervisorError):
    """
    The supervisor is not running: the call came before ``async with supervisor:`` was
    entered or after it was left, or it was queued or running when the supervisor left
    ``async with``. Unlike :class:`BreakerOpen`, it says nothing about the dependency.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class DependencyCrashed(SupervisorError):
    """
    The dependency's actor crashed (for instance a user's break-duration callable raised).
    The supervisor restarts it, at most ``max_restarts`` times in ``restart_window`` seconds;
    past that it stays down (isolated, reason ``crashed``) until ``reset``. The crash is the
    ``__cause__``.
    """

    def __init__(self, dependency: str, crash: BaseException, *, down: bool) -> None:
        self.dependency = dependency
        self.down = down
        state = "is down (restart limit reached)" if down else "crashed and was restarted"
        super().__init__(f"dependency {dependency!r} {state}: {_describe(crash)}")


def note_attempts(exc: Exception, dependency: str, attempt: int) -> None:
    """
    Note on *exc* how many attempts were made, replacing the note an earlier raise of the
    same object left: a pre-allocated exception raised 10,000 times carried 10,000 notes
    (issue #8, defect 8). A single-attempt raise only drops a stale note.
    """
    suffix = f" attempts on {dependency!r} failed; this is the last one's error"
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [
            note
            for note in notes
            if not (
                isinstance(note, str) and note.startswith("ringfence: ") and note.endswith(suffix)
            )
        ]
    if attempt > 1:
        try:
            exc.add_note(f"ringfence: {attempt}{suffix}")
        except TypeError:  # the user's __notes__ is not a list: leave it alone
            pass


def note_hedges(exc: Exception, dependency: str, attempts: int, hedges: int) -> None:
    """
    Note on *exc* that hedges ran (``policies.Hedge``): how many attempts and hedges the
    call made, replacing the note an earlier raise of the same object left.
    """
    prefix = "ringfence: hedged call on "
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(prefix))]
    try:
        exc.add_note(
            f"{prefix}{dependency!r}: {attempts} attempt{'s' if attempts != 1 else ''} and"
            f" {hedges} hedge{'s' if hedges != 1 else ''} ran; this is the last error"
        )
    except TypeError:  # the user's __notes__ is not a list: leave it alone
        pass


#: The message of the ``SupervisorClosed`` a call gets when the supervisor leaves while the
#: call waits for a bulkhead slot (failed from the queue, or handed a slot as it left).
DEQUEUED: Final = "supervisor shut down while the call was queued"
#: The message of the ``SupervisorClosed`` of a dependency asked anything before it starts.
NOT_STARTED: Final = "supervisor is not running: enter `async with supervisor:` before calling"


def not_started(*args: object) -> Any:  # pragma: no cover - replaced at start
    """The placeholder of what a dependency is given when its supervisor starts."""
    raise SupervisorClosed(NOT_STARTED)


def all_of(exc: Exception, types: tuple[type[Exception], ...]) -> bool:
    """*exc* is one of *types*, or a group (a task group in the dependency) of nothing else."""
    if isinstance(exc, types):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.split(types)[1] is None
