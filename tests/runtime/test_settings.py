"""
A dependency's policies as configured (``supervisor._spec.Settings``): what a registration's
and a reconfigure's arguments become, decided once, with no actor around (issue 17).
"""

from __future__ import annotations

import math

from policies import Breaker, ErrorKind, Retry, Timeout, classify
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
