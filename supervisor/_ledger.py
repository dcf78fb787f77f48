"""
A dependency's lifetime counts and crash record: what ``status()`` reports of its history.

Owned by its actor (``Actor._ledger``), which calls these methods from its handlers; nothing
else writes a ledger. Cold: the hot path's own counts (``Actor._calls``, the latency ring)
stay on the actor, which passes them in when a snapshot is taken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, final

from policies.priority import level_name

from ._errors import _describe

__all__ = ("Ledger",)


@final
class Ledger:
    """Lifetime counts (see ``DependencyStatus`` for each) and the crash record."""

    __slots__ = (
        "absorbed_failures",
        "absorbed_successes",
        "chaos",
        "crash",
        "crash_times",
        "cut_offs",
        "errors",
        "failures",
        "fallbacks",
        "hedge_wins",
        "hedges",
        "ignored",
        "rejected",
        "rejected_by",
        "rejected_by_priority",
        "restarts",
        "result_retries",
        "retries",
        "slow_calls",
        "transitions_to",
    )

    def __init__(self) -> None:
        self.failures = 0  # slow calls included
        self.slow_calls = 0
        self.rejected = 0
        self.rejected_by: dict[str, int] = {}  # reason -> count; adds up to rejected
        self.rejected_by_priority: dict[str, int] = {}  # level name -> bulkhead/rate refusals
        self.errors: dict[str, int] = {}  # exception type name -> attempts that raised it
        self.ignored = 0  # exceptions the breaker did not record (a 400, a 429)
        self.cut_offs = 0  # attempts the call's total deadline cut off
        self.retries = 0
        self.result_retries = 0  # retries of a result (retry_on_result), not of an error
        self.fallbacks = 0
        self.hedges = 0
        self.hedge_wins = 0
        # A hedged call's contenders whose outcome was not the call's (the race absorbed it):
        # counted as attempts, not again as requests, successes or errors raised to callers.
        self.absorbed_failures = 0  # failed or cut off (counted in errors, rejected, cut_offs)
        self.absorbed_successes = 0  # answered after another contender had won
        self.chaos: dict[str, int] = {}  # what Chaos injected (error, latency, result) -> count
        self.transitions_to: dict[str, int] = {}  # target state -> lifetime count
        self.crash_times: deque[float] = deque()  # (the restart policy's window)
        self.restarts = 0
        self.crash: str | None = None  # the latest crash, described

    def rejection(self, reason: str, n: int = 1, level: int | None = None) -> None:
        """*n* calls turned away for *reason*; one of priority *level* (an int of
        ``policies.priority``) is counted by its level too: refused a slot or a turn."""
        self.rejected += n
        self.rejected_by[reason] = self.rejected_by.get(reason, 0) + n
        if level is not None:
            name = level_name(level)
            self.rejected_by_priority[name] = self.rejected_by_priority.get(name, 0) + n

    def failure(self, *, slow: bool = False) -> None:
        self.failures += 1
        if slow:
            self.slow_calls += 1

    def error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1

    def ignore(self) -> None:
        self.ignored += 1

    def cut_off(self) -> None:
        self.cut_offs += 1

    def retry(self, *, of_result: bool) -> None:
        self.retries += 1
        if of_result:
            self.result_retries += 1

    def fallback(self) -> None:
        self.fallbacks += 1

    def hedge(self) -> None:
        self.hedges += 1

    def hedge_won(self) -> None:
        self.hedge_wins += 1

    def absorbed(self, failures: int, successes: int) -> None:
        self.absorbed_failures += failures
        self.absorbed_successes += successes

    def injected(self, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self.chaos[kind] = self.chaos.get(kind, 0) + 1

    def transition(self, target: str) -> None:
        self.transitions_to[target] = self.transitions_to.get(target, 0) + 1

    def crashed(
        self, crash: BaseException, now: float, may_restart: Callable[[deque[float], float], bool]
    ) -> bool:
        """A crash at *now*: recorded; whether the dependency is down (no restart left)."""
        down = not may_restart(self.crash_times, now)
        self.crash = _describe(crash)  # the crash's __str__ is user code: it may raise
        return down

    def restarted(self) -> None:
        self.restarts += 1

    def fields(self, calls: int) -> dict[str, Any]:
        """
        ``DependencyStatus``'s fields of the counts, *calls* being the attempts that ended
        with an outcome. Each count is read once: a snapshot may be taken in another thread
        (a metrics exporter's) while the loop counts.
        """
        failures, rejected, cut_offs = self.failures, self.rejected, self.cut_offs
        # What callers got, from the attempts' counts: a retry follows exactly one attempt
        # (of an error or a result) and makes another; a fallback answers exactly one failed
        # attempt. Calls cancelled or cut off by shutdown are in none of these.
        errors = dict(self.errors)
        counted_errors = sum(errors.values())
        raised_attempts = counted_errors + rejected + cut_offs
        retries, result_retries, fallbacks = self.retries, self.result_retries, self.fallbacks
        # A hedged call is one request: its contenders' outcomes but the call's own are not.
        lost, late = self.absorbed_failures, self.absorbed_successes
        return {
            "calls": calls,
            "failures": failures,
            "rejected": rejected,
            "failure_rate": failures / calls if calls else 0.0,
            "errors": errors,
            "slow_calls": self.slow_calls,
            "restarts": self.restarts,
            "crash": self.crash,
            "retries": retries,
            "fallbacks": fallbacks,
            "ignored": self.ignored,
            "cut_off": cut_offs,
            "requests": calls + rejected + cut_offs - retries - lost - late,
            "successes": calls - counted_errors - result_retries - late,
            "raised": raised_attempts - (retries - result_retries) - fallbacks - lost,
            "chaos": dict(self.chaos),
            "rejected_by": dict(self.rejected_by),
            "rejected_by_priority": dict(self.rejected_by_priority),
            "transitions_total": dict(self.transitions_to),
            "hedges": self.hedges,
            "hedge_wins": self.hedge_wins,
        }
