"""retry_after(): the server's "come back in N seconds", read from real clients' errors."""

from __future__ import annotations

import email.utils
import http.client
import io
import math
import re
import urllib.error
from typing import Any
from unittest.mock import Mock

import pytest

from policies.classify import retry_after
from supervisor import BreakerOpen

from ._real_clients import (
    aiohttp_response_error,
    anthropic_body,
    httpx_status_error,
    openai_body,
    require,
    respond,
    sdk_error,
)

NOW = 1_700_000_000.0  # a fixed wall-clock time: 2023-11-14T22:13:20Z


def _http_date(seconds_from_now: float) -> str:
    """An IMF-fixdate (RFC 9110 section 5.6.7) that far from NOW."""
    return email.utils.formatdate(NOW + seconds_from_now, usegmt=True)


class _Headers(Exception):
    def __init__(self, headers: object = None, *, retry_after: object = None) -> None:
        self.headers = headers
        if retry_after is not None:
            self.retry_after = retry_after


class _Response:
    def __init__(self, headers: object) -> None:
        self.headers = headers


class _OnResponse(Exception):
    def __init__(self, headers: object, own: object = None) -> None:
        self.response = _Response(headers)
        self.headers = own


# ------------------------------------------------------------------------------ header values


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "20"}, 20.0, id="seconds"),
        pytest.param({"retry-after": "0"}, 0.0, id="zero"),
        pytest.param({"RETRY-AFTER": " 7 "}, 7.0, id="case-and-spaces"),
        pytest.param({"Retry-After": "1.5"}, 1.5, id="decimal"),
        pytest.param({"Retry-After": ".5"}, 0.5, id="leading-dot"),
        pytest.param({"Retry-After": "300"}, 300.0, id="at-cap"),
        pytest.param({"Retry-After": "301"}, 300.0, id="above-cap"),
        pytest.param({"Retry-After": "86400"}, 300.0, id="a-day"),
        pytest.param({"Retry-After": "9" * 400}, 300.0, id="overflows-float"),
        pytest.param({"Retry-After": "-5"}, None, id="negative"),
        pytest.param({"Retry-After": "+5"}, None, id="plus-sign"),
        pytest.param({"Retry-After": "NaN"}, None, id="nan"),
        pytest.param({"Retry-After": "inf"}, None, id="inf"),
        pytest.param({"Retry-After": "1e3"}, None, id="exponent"),
        pytest.param({"Retry-After": "1_000"}, None, id="underscores"),
        pytest.param({"Retry-After": "\u0663"}, None, id="non-ascii-digit"),
        pytest.param({"Retry-After": "soon"}, None, id="garbage"),
        pytest.param({"Retry-After": ""}, None, id="empty"),
        pytest.param({"Retry-After": _http_date(20)}, 20.0, id="http-date"),
        pytest.param({"Retry-After": _http_date(-3600)}, 0.0, id="http-date-past"),
        pytest.param({"Retry-After": _http_date(10**6)}, 300.0, id="http-date-far"),
        pytest.param(
            {"Retry-After": email.utils.formatdate(NOW + 30)}, 30.0, id="http-date-minus-0000"
        ),
        pytest.param({"Retry-After": "Sunday, 06-Nov-94 08:49:37 GMT"}, 0.0, id="rfc850-date-past"),
        pytest.param({"Retry-After": "Wed, 99 Foo 2015 07:28:00 GMT"}, None, id="bad-date"),
        pytest.param({"Retry-After": "Fri, 31 Dec 99999 23:59:59 GMT"}, None, id="year-99999"),
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms"),
        pytest.param({"retry-after-ms": "250.5"}, 0.2505, id="ms-decimal"),
        pytest.param({"retry-after-ms": "9" * 400}, 300.0, id="ms-overflow"),
        pytest.param({"retry-after-ms": "900000"}, 300.0, id="ms-above-cap"),
        pytest.param({"retry-after-ms": "-1"}, None, id="ms-negative"),
        pytest.param({"Retry-After-Ms": "100", "Retry-After": "20"}, 0.1, id="ms-first"),
        pytest.param({"retry-after-ms": "junk", "Retry-After": "20"}, 20.0, id="bad-ms-falls-back"),
        pytest.param({"X-RateLimit-Reset": "20"}, None, id="other-header"),
        pytest.param({}, None, id="no-headers"),
        pytest.param({b"Retry-After": b"4"}, 4.0, id="bytes"),
        pytest.param({1: "4", "Retry-After": 4}, None, id="non-str-key-and-value"),
    ],
)
def test_header_values(headers: dict[Any, Any], expected: float | None) -> None:
    """Seconds, decimals, HTTP dates and milliseconds; bad values are ignored, big ones capped."""
    assert expected == retry_after(_Headers(headers), now=NOW)


def test_http_date_fraction_is_exact() -> None:
    """A date is the date minus now, with now's fraction kept."""
    assert 19.75 == retry_after(_Headers({"Retry-After": _http_date(20)}), now=NOW + 0.25)


def test_cap_is_a_parameter() -> None:
    """cap bounds every source: attribute, seconds, milliseconds and dates."""
    assert [5.0, 5.0, 5.0, 5.0] == [
        retry_after(_Headers(retry_after=60), now=NOW, cap=5.0),
        retry_after(_Headers({"Retry-After": "60"}), now=NOW, cap=5.0),
        retry_after(_Headers({"retry-after-ms": "60000"}), now=NOW, cap=5.0),
        retry_after(_Headers({"Retry-After": _http_date(60)}), now=NOW, cap=5.0),
    ]


# ------------------------------------------------------------------------------ the attribute


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        pytest.param(20, 20.0, id="int"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param(0, 0.0, id="zero"),
        pytest.param(1e9, 300.0, id="capped"),
        pytest.param(10**400, 300.0, id="int-beyond-float"),
        pytest.param(-(10**400), None, id="negative-int-beyond-float"),
        pytest.param(-1, None, id="negative"),
        pytest.param(math.nan, None, id="nan"),
        pytest.param(math.inf, None, id="inf"),
        pytest.param(True, None, id="bool"),
        pytest.param("20", None, id="str"),
        pytest.param(Mock(), None, id="mock"),
    ],
)
def test_numeric_attribute(hint: object, expected: float | None) -> None:
    """A numeric retry_after attribute is seconds; anything else is ignored."""
    assert expected == retry_after(_Headers(retry_after=hint), now=NOW)


def test_attribute_beats_headers_and_a_bad_one_falls_through() -> None:
    """The attribute wins; an unusable attribute leaves the decision to the headers."""
    assert [3.0, 20.0] == [
        retry_after(_Headers({"Retry-After": "20"}, retry_after=3), now=NOW),
        retry_after(_Headers({"Retry-After": "20"}, retry_after=-3), now=NOW),
    ]


def test_breaker_open_carries_its_retry_after() -> None:
    """ringfence's own BreakerOpen: its seconds are used; inf (isolated) means no hint."""
    assert [2.5, None] == [
        retry_after(BreakerOpen("db", 2.5), now=NOW),
        retry_after(BreakerOpen("db", math.inf, "isolated"), now=NOW),
    ]


# ------------------------------------------------------------------------------ groups


def test_a_group_waits_for_its_slowest_leaf() -> None:
    """A task group's hint is the largest of its leaves', through nested groups."""
    group = ExceptionGroup(
        "tg",
        [
            httpx_status_error(429, {"Retry-After": "5"}),
            ConnectionError("no hint"),
            ExceptionGroup(
                "nested",
                [_Headers(retry_after=7), _Headers({"Retry-After": _http_date(30)})],
            ),
        ],
    )
    assert 30.0 == retry_after(group, now=NOW)


def test_a_groups_hints_are_capped_and_unusable_ones_ignored() -> None:
    """Each leaf's hint is read as for a lone exception: capped, bad values ignored."""
    assert [300.0, 60.0, 2.0, None] == [
        retry_after(ExceptionGroup("g", [_Headers({"Retry-After": "3600"})]), now=NOW),
        retry_after(ExceptionGroup("g", [_Headers(retry_after=3600)]), now=NOW, cap=60.0),
        retry_after(
            ExceptionGroup("g", [_Headers(retry_after=-1), _Headers({"retry-after-ms": "2000"})]),
            now=NOW,
        ),
        retry_after(
            ExceptionGroup("g", [ConnectionError(), _Headers({"Retry-After": "x"})]), now=NOW
        ),
    ]


class _GroupWithHint(ExceptionGroup[Exception]):
    retry_after = 40


def test_a_groups_own_hint_counts_too() -> None:
    """A hint on the group itself is one more candidate for the largest."""
    assert [40.0, 50.0] == [
        retry_after(_GroupWithHint("g", [_Headers(retry_after=4)]), now=NOW),
        retry_after(_GroupWithHint("g", [_Headers(retry_after=50)]), now=NOW),
    ]


def test_a_pathologically_deep_group_gives_no_hint_without_raising() -> None:
    """100,000 nested groups: no RecursionError; the leaf is beyond what is read."""
    exc: Exception = _Headers(retry_after=5)
    for _ in range(100_000):
        exc = ExceptionGroup("level", [exc])
    assert retry_after(exc, now=NOW) is None


# ------------------------------------------------------------------------------ where headers are


def test_exception_headers_beat_response_headers() -> None:
    """exc.headers first, exc.response.headers when the first has no usable value."""
    assert [1.0, 2.0, 2.0] == [
        retry_after(_OnResponse({"Retry-After": "2"}, {"Retry-After": "1"}), now=NOW),
        retry_after(_OnResponse({"Retry-After": "2"}, {"Retry-After": "bad"}), now=NOW),
        retry_after(_OnResponse({"Retry-After": "2"}, None), now=NOW),
    ]


class _BrokenHeaders:
    def items(self) -> Any:
        raise RuntimeError("closed")


class _RaisingHeaders(Exception):
    @property
    def headers(self) -> Any:
        raise RuntimeError("not loaded")


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(_Headers(None), id="none"),
        pytest.param(_Headers("Retry-After: 5"), id="str"),
        pytest.param(_Headers([("Retry-After", "5")]), id="list"),
        pytest.param(_Headers(Mock()), id="mock"),
        pytest.param(_Headers(_BrokenHeaders()), id="items-raises"),
        pytest.param(_RaisingHeaders(), id="property-raises"),
        pytest.param(Mock(), id="mock-exception"),
        pytest.param(ValueError(), id="plain"),
    ],
)
def test_odd_header_objects_give_none(exc: BaseException) -> None:
    """Whatever the header object is or does, the answer is None, never an exception."""
    assert None is retry_after(exc, now=NOW)


# ------------------------------------------------------------------------------ real clients


def test_httpx_status_error_headers() -> None:
    """httpx: the header is on exc.response.headers (case-insensitive httpx.Headers)."""
    assert [20.0, 1.5, None] == [
        retry_after(httpx_status_error(429, {"Retry-After": "20"}), now=NOW),
        retry_after(httpx_status_error(503, {"retry-after-ms": "1500"}), now=NOW),
        retry_after(httpx_status_error(503), now=NOW),
    ]


def test_aiohttp_response_error_headers() -> None:
    """aiohttp: the header is on exc.headers, a CIMultiDictProxy or None."""
    assert [20.0, 10.0, None] == [
        retry_after(aiohttp_response_error(429, {"Retry-After": "20"}), now=NOW),
        retry_after(aiohttp_response_error(503, {"retry-after": _http_date(10)}), now=NOW),
        retry_after(aiohttp_response_error(503), now=NOW),
    ]


def test_urllib_http_error_headers() -> None:
    """urllib: exc.headers is an http.client.HTTPMessage, which is not a Mapping."""
    message = http.client.HTTPMessage()
    message["Retry-After"] = "12"
    error = urllib.error.HTTPError("http://x.test", 429, "slow", message, io.BytesIO())
    assert 12.0 == retry_after(error, now=NOW)


@pytest.mark.parametrize(
    ("sdk", "status", "body", "headers", "expected"),
    [
        ("openai", 429, openai_body("requests"), {"retry-after-ms": "1500"}, 1.5),
        ("openai", 429, openai_body("requests"), {"retry-after": "20"}, 20.0),
        ("openai", 503, openai_body("server_error"), {"retry-after": _http_date(30)}, 30.0),
        ("openai", 429, openai_body("requests"), None, None),
        ("anthropic", 429, anthropic_body("rate_limit_error"), {"retry-after": "20"}, 20.0),
        ("anthropic", 529, anthropic_body("overloaded_error"), {"retry-after": "7"}, 7.0),
        ("anthropic", 529, anthropic_body("overloaded_error"), {"retry-after": "3600"}, 300.0),
        ("anthropic", 529, anthropic_body("overloaded_error"), None, None),
    ],
)
def test_sdk_errors_headers(
    sdk: str, status: int, body: object, headers: dict[str, str] | None, expected: float | None
) -> None:
    """openai and anthropic: the header is on the error's response, as the SDK raised it."""
    assert expected == retry_after(sdk_error(sdk, respond(status, body, headers)), now=NOW)


# ------------------------------------------------------------------------------ misuse


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"now": "now"}, TypeError, "'now' must be a number, got 'now' of type str"),
        ({"now": math.nan}, ValueError, "'now' must be a finite number, got nan"),
        ({"now": NOW, "cap": -1.0}, ValueError, "'cap' must be a number >= 0, got -1.0"),
        ({"now": NOW, "cap": math.inf}, ValueError, "'cap' must be a finite number >= 0, got inf"),
        (
            {"now": NOW, "cap": True},
            TypeError,
            "'cap' must be a number >= 0, got True of type bool",
        ),
    ],
)
def test_bad_now_or_cap(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    """now and cap are checked like every other policy argument (a programming error)."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        retry_after(ValueError(), **kwargs)


def test_client_library_helper_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CI=true a missing client library is an ImportError, not a skip."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(ImportError):
        require("no_such_client_library_for_ringfence")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require("no_such_client_library_for_ringfence")
