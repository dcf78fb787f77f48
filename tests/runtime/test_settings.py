"""
A dependency's policies as configured (``supervisor._spec.Settings``): what a registration's
and a reconfigure's arguments become, decided once, with no actor around (issue 17).
"""

from __future__ import annotations

import math

import httpx

from policies import Breaker, ErrorKind, Retry, Timeout, classify
from supervisor import BreakerOpen, BulkheadFull
from supervisor._spec import MAX_PAUSE, NO_BREAKER, Settings


def _server_error(exc: BaseException) -> ErrorKind:
    return ErrorKind.SERVER_ERROR


def test_none_means_the_default_for_breaker_fallback_on_and_classifier() -> None:
    configured = Settings().changed(
        {"breaker": Breaker(), "classifier": _server_error, "fallback_on": None}
    )
    cleared = configured.changed({"breaker": None, "classifier": None, "fallback_on": None})
    assert (NO_BREAKER, classify) == (cleared.breaker, cleared.classifier)
    assert Settings().fallback_on is cleared.fallback_on


def test_a_change_keeps_what_it_does_not_name() -> None:
    retry, timeout = Retry(attempts=2), Timeout(total=5.0)
    settings = Settings().changed({"retry": retry, "timeout": timeout})
    changed = settings.changed({"timeout": None})
    assert (retry, None, settings) == (changed.retry, changed.timeout, Settings(retry, timeout))


def test_what_follows_from_the_policies_alone() -> None:
    assert (MAX_PAUSE, math.inf) == (Settings().max_pause, Settings().slow_after)
    settings = Settings().changed(
        {"retry": Retry(max_retry_after=7.0), "breaker": Breaker(slow_call=0.5)}
    )
    assert (7.0, 0.5) == (settings.max_pause, settings.slow_after)


class _Boom(Exception):
    pass


def _rate_limited(exc: BaseException) -> ErrorKind:
    return ErrorKind.RATE_LIMITED if isinstance(exc, httpx.HTTPStatusError) else classify(exc)


def test_what_an_attempts_error_means() -> None:
    """``Settings.judge``: kind, pause hint (capped), failure (None: ignored) and refusal; a
    nested call's refusal is neither success nor failure, alone or in a group of refusals,
    and unlike an error the breaker ignores, it is flagged as a refusal."""
    breaker = Breaker(ignore=KeyError)
    settings = Settings().changed(
        {"breaker": breaker, "classifier": _rate_limited, "retry": Retry(max_retry_after=5.0)}
    )
    request = httpx.Request("GET", "https://api.example/v1")
    response = httpx.Response(429, headers={"Retry-After": "7"}, request=request)
    too_many = httpx.HTTPStatusError("429", request=request, response=response)
    refused = BreakerOpen("inner", 3.0, "open")
    group = ExceptionGroup("nested", [refused, BulkheadFull("inner", 1, 0, None)])
    mixed = ExceptionGroup("nested", [refused, ValueError("bug")])
    assert [
        (
            ErrorKind.RATE_LIMITED,
            5.0,
            breaker.is_failure(too_many, ErrorKind.RATE_LIMITED),
            False,
        ),
        (ErrorKind.UNKNOWN, None, None, True),
        (ErrorKind.UNKNOWN, None, None, True),
        (classify(mixed), None, breaker.is_failure(mixed, classify(mixed)), False),
        (ErrorKind.UNKNOWN, None, True, False),  # unclassified: a failure (fail-safe)
        (ErrorKind.INVALID_INPUT, None, False, False),
        (classify(KeyError()), None, None, False),  # ignored by the breaker: not a refusal
    ] == [
        settings.judge(exc)
        for exc in (too_many, refused, group, mixed, _Boom(), ValueError("x"), KeyError("k"))
    ]
