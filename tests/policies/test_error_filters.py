"""Error filters (retry_on, record, ignore, fallback_on): forms, order, defaults, bad input."""

from __future__ import annotations

import datetime
import errno
import functools
import json
import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Breaker, BreakHistory, ErrorKind, RateLimit, Retry, Timeout, classify
from policies._matchers import (
    DEFAULT_FALLBACK_ON,
    DEFAULT_RECORD,
    DEFAULT_RETRY_ON,
    ErrorFilter,
)
from policies.budget import Budget

from ._real_clients import httpx_status_error

FORMS = (
    "an exception type, an ErrorKind, a predicate (exc) -> bool, or a tuple, list or set of those"
)


class AttemptTimeout(TimeoutError):
    """Stand-in for supervisor.AttemptTimeout (policies must not import supervisor)."""


class Status(Exception):
    """An HTTP error the way clients carry it: a ``status_code`` attribute."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


class BadRequest(ValueError):
    """A 400 that is also a ValueError, as some clients raise it."""

    status_code = 400


class Probe(Exception):
    """Counts how often classify() reads it (classify always looks for a status first)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    @property
    def status_code(self) -> None:
        self.reads += 1


# ------------------------------------------------------------------------------ the forms


@pytest.fixture(
    params=["type", "kind", "kind value", "predicate", "tuple", "list", "frozenset", "set"]
)
def connection_errors(request: pytest.FixtureRequest) -> Any:
    """One meaning, "connection errors and the like", in every form a filter accepts."""
    return {
        "type": ConnectionError,
        "kind": ErrorKind.TRANSIENT,
        "kind value": "transient",
        "predicate": lambda exc: isinstance(exc, ConnectionError),
        "tuple": (ConnectionError,),
        "list": [ErrorKind.TRANSIENT],
        "frozenset": frozenset({ConnectionError}),
        "set": {ConnectionError, ErrorKind.TRANSIENT},
    }[request.param]


def test_every_form_decides_the_same(connection_errors: Any) -> None:
    """A type, a kind, its value, a predicate and collections all match alike."""
    flt = ErrorFilter.of(connection_errors, name="retry_on")
    assert (True, False, False) == (
        flt(ConnectionResetError()),
        flt(BadRequest()),
        flt(RuntimeError()),
    )


@pytest.mark.parametrize(
    ("build", "matches"),
    [
        (lambda f: Retry(retry_on=f).should_retry, True),
        (lambda f: Breaker(record=f).is_failure, True),
        (lambda f: Breaker(ignore=f).is_failure, None),
    ],
    ids=["retry_on", "record", "ignore"],
)
def test_every_option_takes_every_form(
    connection_errors: Any, build: Callable[[Any], Callable[[Exception], object]], matches: object
) -> None:
    """retry_on, record and ignore accept the same forms through one converter."""
    decide = build(connection_errors)
    assert matches == decide(ConnectionResetError())


def test_a_mixture_matches_when_any_part_does() -> None:
    """Types, kinds and predicates in one tuple: each adds what it matches."""
    flt = ErrorFilter.of(
        (KeyError, ErrorKind.RATE_LIMITED, lambda exc: "flaky" in str(exc)), name="x"
    )
    assert [True, True, True, False] == [
        flt(KeyError("k")),
        flt(Status(429)),
        flt(RuntimeError("flaky disk")),
        flt(RuntimeError("broken")),
    ]


def test_forms_normalise_to_one_equal_filter() -> None:
    """A type, a one-tuple and a list with a repeat give equal filters."""
    expected = ErrorFilter(types=(ConnectionError,))
    assert [expected] * 3 == [
        ErrorFilter.of(ConnectionError),
        ErrorFilter.of((ConnectionError,)),
        ErrorFilter.of([ConnectionError, ConnectionError]),
    ]


def test_kind_values_and_kinds_are_the_same_kind() -> None:
    """'rate_limited' (as a config file spells it) equals ErrorKind.RATE_LIMITED."""
    assert ErrorFilter(kinds=frozenset({ErrorKind.RATE_LIMITED})) == ErrorFilter.of(
        ["rate_limited"]
    )


def test_a_filter_passes_through_and_joins_others() -> None:
    """An ErrorFilter is kept as it is; inside a collection its parts join the others'."""
    assert DEFAULT_RETRY_ON is ErrorFilter.of(DEFAULT_RETRY_ON)
    joined = ErrorFilter.of((DEFAULT_RETRY_ON, KeyError))
    assert ErrorFilter(types=(KeyError,), kinds=DEFAULT_RETRY_ON.kinds) == joined


def test_evolve_keeps_the_filters() -> None:
    """attrs.evolve passes converted filters through the converter again, unchanged."""
    predicate = lambda exc: True  # noqa: E731
    retry = attrs.evolve(Retry(retry_on=predicate), attempts=5)
    breaker = attrs.evolve(Breaker(record=KeyError, ignore=ErrorKind.AUTH), half_open_probes=2)
    assert (
        (predicate,),
        ErrorFilter(types=(KeyError,)),
        ErrorFilter(kinds=frozenset({ErrorKind.AUTH})),
    ) == (retry.retry_on.predicates, breaker.record, breaker.ignore)


def test_empty_matches_nothing() -> None:
    """ErrorFilter() and an empty tuple match no exception at all."""
    assert [False, False] == [ErrorFilter()(ConnectionError()), ErrorFilter.of(())(Status(503))]


def test_repr_is_readable_and_stable() -> None:
    """The repr lists types, kinds (in ErrorKind's order, whatever the hash seed) and predicates."""
    flt = ErrorFilter.of(("rate_limited", KeyError, ErrorKind.TRANSIENT))
    assert (
        "ErrorFilter(types=(<class 'KeyError'>,),"
        " kinds=frozenset({ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED}), predicates=())"
    ) == repr(flt)
    assert "ErrorFilter(types=(), kinds=frozenset(), predicates=())" == repr(ErrorFilter())


# ------------------------------------------------------------------------------ the order


def test_types_match_without_classifying() -> None:
    """A matching type answers before classify() reads the exception."""
    probe = Probe()
    ErrorFilter.of((Probe, ErrorKind.TRANSIENT))(probe)
    assert 0 == probe.reads


def test_no_kinds_means_no_classification() -> None:
    """Without kinds, classify() never runs, even when nothing matches."""
    seen: list[BaseException] = []
    probe = Probe()
    assert not ErrorFilter.of((KeyError, lambda exc: seen.append(exc)))(probe)
    assert (0, [probe]) == (probe.reads, seen)


def test_kinds_classify_when_no_type_matched() -> None:
    """With kinds given and no type matching, the exception is classified once."""
    probe = Probe()
    ErrorFilter.of((KeyError, ErrorKind.TRANSIENT))(probe)
    assert 1 == probe.reads


def test_a_known_kind_is_not_classified_again() -> None:
    """kind= (the runtime's own classification) is used as it is, without classify()."""
    probe = Probe()
    assert (True, 0) == (
        ErrorFilter.of(ErrorKind.PERMANENT)(probe, ErrorKind.PERMANENT),
        probe.reads,
    )
    assert not Retry().should_retry(ConnectionError(), ErrorKind.INVALID_INPUT)
    assert Breaker().is_failure(ValueError(), ErrorKind.TRANSIENT)


def test_predicates_run_last_and_in_order() -> None:
    """Predicates are skipped once a type or kind matched; otherwise tried in order."""
    calls: list[str] = []

    def first(exc: Exception) -> bool:
        calls.append("first")
        return False

    def second(exc: Exception) -> bool:
        calls.append("second")
        return True

    flt = ErrorFilter.of((KeyError, ErrorKind.RATE_LIMITED, first, second))
    flt(KeyError())
    flt(Status(429))
    assert [] == calls
    assert flt(RuntimeError())
    assert ["first", "second"] == calls


def test_a_predicate_that_raises_propagates() -> None:
    """A broken predicate's own exception propagates unchanged."""
    boom = LookupError("rule broke")

    def broken(exc: Exception) -> bool:
        raise boom

    with pytest.raises(LookupError) as info:
        Retry(retry_on=broken).should_retry(RuntimeError())
    assert boom is info.value


def test_is_failure_checks_ignore_first() -> None:
    """An error both ignored and recorded is ignored; recorded gives True, other False."""
    config = Breaker(record=(ConnectionError,), ignore=(ConnectionResetError,))
    assert [None, True, False] == [
        config.is_failure(ConnectionResetError()),
        config.is_failure(ConnectionRefusedError()),
        config.is_failure(KeyError()),
    ]


# ------------------------------------------------------------------------------ bad input


async def _async_check(exc: Exception) -> bool:
    return True


class _AsyncCall:
    async def __call__(self, exc: Exception) -> bool:
        return True


def _wrapped() -> Callable[[Exception], object]:
    @functools.wraps(_async_check)
    def wrapper(exc: Exception) -> object:
        return _async_check(exc)

    return wrapper


async def _async_gen(exc: Exception) -> Any:
    yield True


@pytest.mark.parametrize(
    "predicate",
    [
        _async_check,
        functools.partial(_async_check),
        _wrapped(),
        _AsyncCall(),
        _async_gen,
    ],
    ids=["async def", "partial", "functools.wraps", "async __call__", "async generator"],
)
@pytest.mark.parametrize("name", ["retry_on", "record", "ignore"])
def test_async_predicates_are_refused(predicate: object, name: str) -> None:
    """An async predicate (its coroutine would always be truthy) is a TypeError naming it."""
    build = {
        "retry_on": lambda: Retry(retry_on=predicate),
        "record": lambda: Breaker(record=(KeyError, predicate)),
        "ignore": lambda: Breaker(ignore=[predicate]),
    }[name]
    message = (
        f"{name!r} must hold plain predicates (exc) -> bool, got the async callable"
        f" {predicate!r}: its coroutine would always count as a match"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        build()


def test_a_predicate_returning_a_coroutine_fails_when_called() -> None:
    """A lambda around an async function is caught at call time; its coroutine is closed."""
    predicate = lambda exc: _async_check(exc)  # noqa: E731
    retry = Retry(retry_on=predicate)
    message = (
        f"the predicate {predicate!r} returned an awaitable: error filter predicates must be"
        " plain functions returning a bool"
    )
    # filterwarnings=error: an unclosed coroutine would fail the test with a RuntimeWarning.
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        retry.should_retry(RuntimeError())


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (None, TypeError, f"'fallback_on' must be {FORMS}; it holds None of type NoneType"),
        (3, TypeError, f"'fallback_on' must be {FORMS}; it holds 3 of type int"),
        (
            (KeyError, 2.5),
            TypeError,
            f"'fallback_on' must be {FORMS}; it holds 2.5 of type float",
        ),
        (
            int,
            TypeError,
            f"'fallback_on' must be {FORMS}; it holds <class 'int'>, which is no exception",
        ),
        (
            [KeyError, [ValueError]],
            TypeError,
            f"'fallback_on' must be {FORMS}, not nested; it holds the list [<class 'ValueError'>]",
        ),
        (
            "ValueError",
            ValueError,
            "'fallback_on' holds the string 'ValueError', which names no ErrorKind (one of"
            " 'transient', 'rate_limited', 'permanent', 'auth', 'invalid_input', 'unknown');"
            " pass an exception type itself, not its name",
        ),
    ],
)
def test_bad_items_name_the_argument_and_the_item(
    spec: object, error: type[Exception], message: str
) -> None:
    """Wrong items: TypeError (ValueError for an unknown kind name) naming argument and item."""
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        ErrorFilter.of(spec, name="fallback_on")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"types": (KeyError, 3)},
            "'types' must be a tuple of exception types, got (<class 'KeyError'>, 3)",
        ),
        ({"types": KeyError}, "'types' must be a tuple of exception types, got <class 'KeyError'>"),
        (
            {"kinds": {ErrorKind.AUTH}},
            "'kinds' must be a frozenset of ErrorKind, got {<ErrorKind.AUTH: 'auth'>}",
        ),
        (
            {"kinds": frozenset({"auth"})},
            "'kinds' must be a frozenset of ErrorKind, got frozenset({'auth'})",
        ),
        (
            {"predicates": [len]},
            "'predicates' must be a tuple of predicates (exc) -> bool, got [<built-in function len>]",
        ),
        ({"predicates": (3,)}, f"'predicates' must be {FORMS}; it holds 3 of type int"),
    ],
)
def test_direct_construction_is_checked(fields: dict[str, object], message: str) -> None:
    """ErrorFilter(...) built by hand checks its fields as strictly as ErrorFilter.of."""
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        ErrorFilter(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the defaults

BAD_REQUEST = ValueError("the caller's input")  # a 400 by another name: invalid_input
UNAUTHORIZED = Status(401)
RATE_LIMITED = Status(429)


class DriverError(Exception):
    """A client's own exception type that classify() knows nothing about (unknown)."""


@pytest.mark.parametrize(
    ("exc", "retried", "recorded", "fallback"),
    [
        (ConnectionError("reset"), True, True, True),
        (AttemptTimeout("attempt 1 took too long"), True, True, True),
        (Status(503), True, True, True),
        (RATE_LIMITED, True, False, True),
        (BAD_REQUEST, False, False, False),
        (BadRequest(), False, False, False),
        (KeyError("k"), False, False, False),
        (TypeError("bad argument"), False, False, False),
        (UNAUTHORIZED, False, False, False),
        (Status(403), False, False, False),
        (Status(418), False, False, True),  # permanent
        # unknown: fail safe, it counts against the dependency
        (RuntimeError("no idea"), True, True, True),
        (DriverError("server closed the connection unexpectedly"), True, True, True),
        (OSError(errno.EIO, "I/O error"), True, True, True),
        (json.JSONDecodeError("Expecting value", "<html>", 0), True, True, True),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), True, True, True),
        # groups: their leaves' common kind
        (ExceptionGroup("tg", [ConnectionError(), TimeoutError()]), True, True, True),
        (ExceptionGroup("tg", [UNAUTHORIZED, Status(403)]), False, False, False),
        (
            ExceptionGroup("tg", [RATE_LIMITED, ExceptionGroup("n", [RATE_LIMITED])]),
            True,
            False,
            True,
        ),
        (ExceptionGroup("tg", [BAD_REQUEST, ConnectionError()]), True, True, True),  # unknown
    ],
    ids=[
        "connection",
        "AttemptTimeout",
        "503",
        "429",
        "ValueError",
        "400",
        "KeyError",
        "TypeError",
        "401",
        "403",
        "418",
        "RuntimeError",
        "custom",
        "OSError-EIO",
        "JSONDecodeError",
        "UnicodeDecodeError",
        "group-transient",
        "group-auth",
        "group-429-nested",
        "group-disagreeing",
    ],
)
def test_defaults(exc: Exception, retried: bool, recorded: bool, fallback: bool) -> None:
    """
    Retry transient, 429 and unknown; record transient and unknown; fall back on all but
    input and auth. What nobody classified counts against the dependency (fail safe).
    """
    assert (retried, recorded, fallback) == (
        Retry().should_retry(exc),
        Breaker().is_failure(exc),
        DEFAULT_FALLBACK_ON(exc),
    )


def test_default_filters_are_the_documented_kinds() -> None:
    """The three defaults, spelled out as kinds, and the ones Retry and Breaker use."""
    transient, rate_limited, unknown = (
        ErrorKind.TRANSIENT,
        ErrorKind.RATE_LIMITED,
        ErrorKind.UNKNOWN,
    )
    assert (
        frozenset({transient, rate_limited, unknown}),
        frozenset({transient, unknown}),
        frozenset({transient, rate_limited, ErrorKind.PERMANENT, unknown}),
        (DEFAULT_RETRY_ON, DEFAULT_RECORD, ErrorFilter()),
    ) == (
        DEFAULT_RETRY_ON.kinds,
        DEFAULT_RECORD.kinds,
        DEFAULT_FALLBACK_ON.kinds,
        (Retry().retry_on, Breaker().record, Breaker().ignore),
    )


@pytest.mark.parametrize(
    ("status", "retried", "recorded"),
    [(429, True, False), (503, True, True), (400, False, False), (401, False, False)],
)
def test_defaults_on_real_httpx_errors(status: int, retried: bool, recorded: bool) -> None:
    """A real httpx.HTTPStatusError: 429 retried, not recorded; 400 and 401 neither."""
    exc = httpx_status_error(status)
    assert (retried, recorded) == (Retry().should_retry(exc), Breaker().is_failure(exc))


def test_the_old_narrow_defaults_are_one_argument_away() -> None:
    """Passing the kinds brings back "unknown is neither retried nor recorded"."""
    retry = Retry(retry_on=(ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED))
    breaker = Breaker(record=ErrorKind.TRANSIENT)
    assert (False, False, True, True) == (
        retry.should_retry(RuntimeError()),
        breaker.is_failure(RuntimeError()),
        retry.should_retry(RATE_LIMITED),
        breaker.is_failure(ConnectionError()),
    )


def test_the_old_defaults_are_one_argument_away() -> None:
    """retry_on=Exception and record=Exception bring back "every Exception"."""
    assert (True, True) == (
        Retry(retry_on=Exception).should_retry(BAD_REQUEST),
        Breaker(record=Exception).is_failure(BAD_REQUEST),
    )


@given(
    st.lists(st.sampled_from([KeyError, OSError, ConnectionError, ValueError]), max_size=3),
    st.frozensets(st.sampled_from(ErrorKind)),
    st.lists(st.booleans(), max_size=3),
    st.sampled_from(
        [KeyError(), ConnectionResetError(), ValueError(), Status(429), Status(401), OSError()]
    ),
)
def test_a_filter_is_the_union_of_its_parts(
    types: list[type[Exception]],
    kinds: frozenset[ErrorKind],
    verdicts: list[bool],
    exc: Exception,
) -> None:
    """Whatever the mixture, the filter matches exactly when a type, kind or predicate does."""
    predicates = [lambda e, v=v: v for v in verdicts]
    flt = ErrorFilter.of([*types, *kinds, *predicates])
    expected = isinstance(exc, tuple(types)) or classify(exc) in kinds or any(verdicts)
    assert expected == flt(exc)


# ------------------------------------------------------------------------------ durations

ONE_AND_A_HALF = datetime.timedelta(seconds=1, milliseconds=500)


@pytest.mark.parametrize(
    ("build", "read"),
    [
        (lambda d: Timeout(attempt=d), lambda c: c.attempt),
        (lambda d: Timeout(total=d), lambda c: c.total),
        (lambda d: Breaker(failure_ratio=0.5, sampling=d), lambda c: c.sampling),
        (lambda d: Breaker(slow_call=d), lambda c: c.slow_call),
        (lambda d: Retry(max_retry_after=d), lambda c: c.max_retry_after),
        (lambda d: RateLimit(1, per=d), lambda c: c.per),
        (lambda d: RateLimit(1, max_wait=d), lambda c: c.max_wait),
        (lambda d: Budget(window=d), lambda c: c.window),
    ],
    ids=[
        "Timeout.attempt",
        "Timeout.total",
        "Breaker.sampling",
        "Breaker.slow_call",
        "Retry.max_retry_after",
        "RateLimit.per",
        "RateLimit.max_wait",
        "Budget.window",
    ],
)
def test_durations_accept_timedelta(
    build: Callable[[object], object], read: Callable[[Any], float]
) -> None:
    """A timedelta is stored as its seconds, equal to the config built from the number."""
    config = build(ONE_AND_A_HALF)
    assert (1.5, build(1.5)) == (read(config), config)


def test_a_numeric_break_duration_accepts_timedelta() -> None:
    """Breaker(break_duration=timedelta) is break_duration.constant of its seconds."""
    config = Breaker(break_duration=datetime.timedelta(minutes=2))
    assert (Breaker(break_duration=120.0), 120.0) == (
        config,
        config.break_duration(BreakHistory(openings=1, previous=None, closed_for=1.0)),
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Timeout(attempt=datetime.timedelta(0)), "'attempt' must be a number > 0, got 0.0"),
        (
            lambda: Timeout(total=datetime.timedelta(seconds=-3)),
            "'total' must be a number > 0, got -3.0",
        ),
        (
            lambda: Breaker(slow_call=datetime.timedelta(seconds=-1)),
            "'slow_call' must be a number > 0, got -1.0",
        ),
        (
            lambda: Breaker(failure_ratio=0.5, sampling=datetime.timedelta(0)),
            "'sampling' must be a number > 0, got 0.0",
        ),
        (
            lambda: Breaker(break_duration=datetime.timedelta(seconds=-1)),
            "'break_duration' must be a number >= 0, got -1.0",
        ),
        (
            lambda: Retry(max_retry_after=datetime.timedelta(0)),
            "'max_retry_after' must be a number > 0, got 0.0",
        ),
    ],
)
def test_a_bad_timedelta_fails_like_its_seconds(build: Callable[[], object], message: str) -> None:
    """A zero or negative timedelta gets the message its number of seconds would get."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Timeout(attempt="5"), "'attempt' must be a number > 0, got '5' of type str"),
        (
            lambda: Breaker(slow_call=True),
            "'slow_call' must be a number > 0, got True of type bool",
        ),
        (
            lambda: Retry(max_retry_after=None),
            "'max_retry_after' must be a number > 0, got None of type NoneType",
        ),
    ],
)
def test_other_durations_keep_their_messages(build: Callable[[], object], message: str) -> None:
    """The converter only converts a timedelta; anything else reaches the validator as given."""
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        build()
