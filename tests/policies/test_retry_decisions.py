"""The retry loop's pure decisions (Retry.after_failure / after_result) and the wait limit."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Budget, ErrorKind, Retry, backoff
from policies.retry import Stop
from policies.timeout import limit_of

RNG = random.Random(0)


def _retry(**kwargs: object) -> Retry:
    return Retry(backoff=backoff.constant(1.0), budget=None, **kwargs)  # type: ignore[arg-type]


def test_a_failure_worth_retrying_gets_the_backoff() -> None:
    assert _retry(attempts=3).after_failure(ConnectionError(), None, 1, RNG, now=0.0) == 1.0


def test_the_last_attempt_is_final() -> None:
    assert _retry(attempts=3).after_failure(ConnectionError(), None, 3, RNG, now=0.0) is Stop.FINAL


def test_an_error_retry_on_refuses_is_final() -> None:
    retry = _retry(attempts=3)
    assert retry.after_failure(ValueError(), ErrorKind.INVALID_INPUT, 1, RNG, now=0.0) is Stop.FINAL


def test_a_hint_longer_than_the_backoff_is_the_delay() -> None:
    retry = _retry(attempts=3)
    assert retry.after_failure(ConnectionError(), None, 1, RNG, now=0.0, retry_after=7.0) == 7.0


def test_a_backoff_ending_at_or_past_the_deadline_stops() -> None:
    retry = _retry(attempts=3)
    assert retry.after_failure(ConnectionError(), None, 1, RNG, now=4.0, deadline=5.0) is (
        Stop.DEADLINE
    )
    assert retry.after_failure(ConnectionError(), None, 1, RNG, now=3.9, deadline=5.0) == 1.0


def test_the_budget_is_asked_last_but_one_and_counts_what_it_allows() -> None:
    budget = Budget(ratio=0.0, min_per_second=0.1, window=10.0).machine()  # one retry in 10 s
    budget.on_call(0.0)
    retry = _retry(attempts=5)
    assert retry.after_failure(ConnectionError(), None, 1, RNG, now=0.0, budget=budget) == 1.0
    assert retry.after_failure(ConnectionError(), None, 2, RNG, now=0.0, budget=budget) is (
        Stop.BUDGET
    )
    # A final error never reaches the budget: nothing more is refused.
    refused = budget.snapshot(0.0).refused
    assert (
        retry.after_failure(ValueError(), ErrorKind.INVALID_INPUT, 1, RNG, now=0.0, budget=budget)
        is Stop.FINAL
    )
    assert budget.snapshot(0.0).refused == refused


def test_a_result_is_retried_only_when_the_predicate_asks() -> None:
    assert _retry(attempts=3).after_result(None, 1, RNG, now=0.0) is Stop.FINAL
    retry = _retry(attempts=3, retry_on_result=lambda r: r is None)
    assert retry.after_result(None, 1, RNG, now=0.0) == 1.0
    assert retry.after_result("x", 1, RNG, now=0.0) is Stop.FINAL
    assert retry.after_result(None, 3, RNG, now=0.0) is Stop.FINAL
    assert retry.after_result(None, 1, RNG, now=9.5, deadline=10.0) is Stop.DEADLINE


def test_a_raising_predicate_propagates() -> None:
    def boom(exc: Exception) -> bool:
        raise KeyError("rule")

    with pytest.raises(KeyError):
        _retry(retry_on=boom).after_failure(ConnectionError(), None, 1, RNG, now=0.0)


@given(
    attempts=st.integers(1, 6),
    attempt=st.integers(1, 8),
    now=st.floats(0, 100),
    deadline=st.none() | st.floats(0, 200),
)
def test_a_delay_is_returned_only_when_every_rule_allows_it(
    attempts: int, attempt: int, now: float, deadline: float | None
) -> None:
    decision = _retry(attempts=attempts).after_failure(
        TimeoutError(), None, attempt, RNG, now=now, deadline=deadline
    )
    if attempt >= attempts:
        assert decision is Stop.FINAL
    elif deadline is not None and now + 1.0 >= deadline:
        assert decision is Stop.DEADLINE
    else:
        assert decision == 1.0


def test_limit_of() -> None:
    assert limit_of(1.0, 2.0, None) == (3.0, False)
    assert limit_of(1.0, 2.0, 2.5) == (2.5, True)
    assert limit_of(1.0, 2.0, 3.0) == (3.0, True)  # a tie: the deadline (counts nothing)
    assert limit_of(1.0, None, 4.0) == (4.0, True)
    assert limit_of(1.0, None, None) == (math.inf, True)
