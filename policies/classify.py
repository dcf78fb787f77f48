"""
Errors of real clients: what kind of failure an exception is, and when the server said to retry.

:func:`classify` sorts any exception into one :class:`ErrorKind` by looking at it the way a
person reading the traceback would, duck-typed: it imports no client library, so the same code
understands httpx, aiohttp, the openai and anthropic SDKs, starlette's ``HTTPException`` and
``urllib.error.HTTPError``, whichever of them happen to be installed.

Theory of operation: the first rule that gives an answer wins, in this order.

1. **An HTTP error status** (400 to 599) on ``exc.status_code``, ``exc.status``,
   ``exc.response.status_code`` or ``exc.response.status``: the first ``int`` from 100 to 599
   found decides. The status is the server's own verdict, so it beats the class: a
   ``ValueError`` subclass carrying a 503 is transient.

   ======================================  ==============
   status                                  kind
   ======================================  ==============
   429                                     rate_limited
   408, 425, 500, 502, 503, 504, 529,      transient
   any other 5xx
   401, 403, 407                           auth
   400, 404, 405, 409, 410, 413, 422       invalid_input
   any other 4xx                           permanent
   ======================================  ==============

2. **A retryable error type in the body**, ``exc.body["error"]["type"]`` (anthropic keeps the
   whole body) or else ``exc.body["type"]`` (openai unwraps ``"error"`` before raising):
   ``overloaded_error``, ``api_error``, ``timeout_error``, ``server_error`` → transient,
   ``rate_limit_error`` → rate_limited. Only consulted when step 1 found no error status. This
   is the streaming case: anthropic reports an overload that happens mid-stream as an
   ``APIStatusError`` with ``status_code == 200`` (the status line went out before the
   overload) and the type only in the body; openai raises a bare ``APIError`` with no status.
3. **An exception group** (``ExceptionGroup``, ``BaseExceptionGroup``: a task group inside
   the dependency failed) takes the kind of its *leaves*, looked at through nested groups: their
   common kind when they all agree, else ``unknown``. Two dropped connections are transient; a
   dropped connection beside a ``ValueError`` is nobody's verdict, so ``unknown``.
4. **Class names in the MRO**, most derived first, so a subclass's entry beats its base's
   (httpx's ``UnsupportedProtocol`` is a ``TransportError`` but no retry will fix it; openai's
   ``APITimeoutError`` subclasses ``APIConnectionError``; aiohttp's ``ClientConnectorError`` is
   also an ``OSError``). Matching names rather than types keeps this module free of imports;
   the builtins (``TimeoutError``, ``ConnectionError``, ``ValueError``, ``TypeError``,
   ``KeyError``) and ringfence's own errors are in the same table. An answer that cannot be
   parsed is the dependency's failure, not the caller's input: ``json.JSONDecodeError`` and
   ``UnicodeDecodeError`` are ``ValueError`` subclasses, but ``unknown``. Encoding the caller's
   own text (``UnicodeEncodeError``, an IDNA ``UnicodeError`` for a bad host name) stays
   ``invalid_input``, with every other ``ValueError``.
5. **An** ``OSError`` **with a network errno** (``ECONNREFUSED``, ``ENETUNREACH``, ...), for
   the plain ``OSError`` a socket call raises when it is not one of the ``ConnectionError``
   subclasses.
6. Anything else is :attr:`ErrorKind.UNKNOWN`. The defaults fail safe on it: ``Retry``
   retries it and ``Breaker`` counts it (see :mod:`policies._matchers`), because an error
   nobody classified (a DB driver's own ``OperationalError``, a ``RuntimeError``, an
   ``OSError(EIO)``) is far more often a sick dependency than a wrong request.

Nothing that inspects the exception may raise: a property that raises (httpx's
``RequestError.request`` on an error built without a request), a ``Mock`` that answers every attribute, a
``bool`` where a status should be, a body that is not a mapping: each is treated as absent.
Nor may a pathological group: members are walked with a loop, not recursion, and at most
``_GROUP_LIMIT`` exceptions of one group are looked at (a group nested 100,000 deep, one with
100,000 leaves, or a subclass whose ``exceptions`` contains itself is ``unknown``).

:func:`retry_after` reads "come back in N seconds" from the same exceptions, with ``now``
(wall-clock seconds) passed in, as every decision in :mod:`policies` is; a group's is the
largest any of its members carries.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import errno
import functools
import inspect
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final, Protocol, final, runtime_checkable

import attrs

from ._validators import check_number

__all__ = (
    "ErrorKind",
    "classify",
    "Classifier",
    "ErrorClassifier",
    "Matcher",
    "retry_after",
)


class ErrorKind(enum.StrEnum):
    """
    What kind of failure an exception is; the words users of such layers already use.

    A ``str`` enum: ``ErrorKind.TRANSIENT == "transient"``, so kinds read well in logs and
    configuration files.
    """

    #: Worth another attempt, and a sign the dependency is sick: timeouts, dropped
    #: connections, 5xx, overloads. Retried and counted by the breaker by default.
    TRANSIENT = "transient"
    #: The server asked to slow down (429); usually carries a Retry-After.
    RATE_LIMITED = "rate_limited"
    #: A failure no retry will fix, and not the caller's input: other 4xx, redirect loops,
    #: certificate failures.
    PERMANENT = "permanent"
    #: Credentials are missing, wrong or not allowed (401, 403, 407): an operator's problem.
    AUTH = "auth"
    #: The caller's request is wrong (400, 404, 422, ``ValueError``...): it must surface.
    INVALID_INPUT = "invalid_input"
    #: Nothing above applies: an exception type nobody classified, an answer that cannot be
    #: parsed, a group whose leaves disagree. Retried and counted by the breaker by default
    #: (fail safe); ``Classifier(rules=...)`` says what your client's own errors are.
    UNKNOWN = "unknown"


_T = ErrorKind.TRANSIENT
_R = ErrorKind.RATE_LIMITED
_P = ErrorKind.PERMANENT
_A = ErrorKind.AUTH
_I = ErrorKind.INVALID_INPUT
_U = ErrorKind.UNKNOWN

# ------------------------------------------------------------------------------ the tables

# HTTP status → kind (RFC 9110 section 15 for the meanings). Any other 5xx is transient (the
# 52x statuses of CDNs and anthropic's 529 "overloaded" included), any other 4xx permanent.
# 408 Request Timeout and 425 Too Early explicitly invite a retry of the same request; 409
# Conflict and 410 Gone are the caller's to resolve, which is why they sit with the 400s.
_STATUS_KINDS: Mapping[int, ErrorKind] = {
    429: _R,
    408: _T,
    425: _T,
    500: _T,
    502: _T,
    503: _T,
    504: _T,
    529: _T,
    401: _A,
    403: _A,
    407: _A,
    400: _I,
    404: _I,
    405: _I,
    409: _I,
    410: _I,
    413: _I,
    422: _I,
}

# Error type in the body → kind. anthropic's types: https://docs.anthropic.com/en/api/errors
# (``overloaded_error`` 529, ``api_error`` 500, ``timeout_error`` 504, ``rate_limit_error``
# 429); ``server_error`` is what openai's streaming endpoints put in the ``error`` event. Only
# types that say "retry" are listed: the others repeat what the status already said, and
# openai's 401 says ``invalid_request_error`` in its body, so trusting every type would be wrong.
_BODY_KINDS: Mapping[str, ErrorKind] = {
    "overloaded_error": _T,
    "api_error": _T,
    "timeout_error": _T,
    "server_error": _T,
    "rate_limit_error": _R,
}

# Class name → kind, looked up along the MRO, most derived first.
_NAME_KINDS: Mapping[str, ErrorKind] = {
    # --- builtins (socket.timeout and asyncio.TimeoutError are TimeoutError since 3.10/3.11)
    "TimeoutError": _T,
    "ConnectionError": _T,  # ConnectionRefusedError, ConnectionResetError, BrokenPipeError, ...
    "gaierror": _T,  # socket.gaierror: a DNS lookup failed; httpx reports it as ConnectError
    "SSLCertVerificationError": _P,  # also a ValueError, but not the caller's input
    # An answer that cannot be parsed (a 200 carrying a proxy's HTML, a truncated or mis-encoded
    # body) is the dependency's failure. Both are ValueErrors, hence the explicit entries;
    # simplejson's, ujson's and orjson's errors are named JSONDecodeError too. Encoding the
    # caller's own text (UnicodeEncodeError, UnicodeError from the idna codec) is the caller's.
    "JSONDecodeError": _U,
    "UnicodeDecodeError": _U,
    "ValueError": _I,
    "TypeError": _I,
    "KeyError": _I,
    # --- httpx (and httpx2, which the openai and anthropic SDKs use): TransportError is the
    # base of TimeoutException, NetworkError, ProtocolError, ProxyError, UnsupportedProtocol.
    "TransportError": _T,
    "UnsupportedProtocol": _I,  # "ftp://...": the URL is the caller's
    "LocalProtocolError": _I,  # the request we were asked to send breaks the protocol
    "InvalidURL": _I,  # httpx's is a bare Exception; aiohttp's is also a ValueError
    "TooManyRedirects": _P,  # httpx and aiohttp: a redirect loop is the server's config
    # --- openai and anthropic: APITimeoutError subclasses APIConnectionError.
    "APIConnectionError": _T,
    "APITimeoutError": _T,
    # --- aiohttp: ClientConnectionError is the base of ClientOSError, ClientConnectorError,
    # ServerDisconnectedError, ServerTimeoutError, ...; a truncated body is a dropped connection.
    "ClientConnectionError": _T,
    "ClientPayloadError": _T,
    "ClientConnectorCertificateError": _P,
    "ServerFingerprintMismatch": _P,
    # --- ringfence's own errors (supervisor/_errors.py), by name so policies/ never imports
    # supervisor/. They matter when one protected function calls another dependency.
    "AttemptTimeout": _T,
    "DeadlineExceeded": _T,
    "BreakerOpen": _T,
    "BulkheadFull": _T,
    "DependencyCrashed": _T,
    "RateLimited": _R,
    "SupervisorClosed": _P,
    "UnknownDependency": _I,
}

# errno values a socket operation reports when the network, not the program, is at fault
# (POSIX names; getattr because not every platform defines every one, EHOSTDOWN for example).
_NETWORK_ERRNOS: frozenset[int] = frozenset(
    code
    for code in (
        getattr(errno, name, None)
        for name in (
            "ECONNREFUSED",
            "ECONNRESET",
            "ECONNABORTED",
            "ETIMEDOUT",
            "EHOSTUNREACH",
            "EHOSTDOWN",
            "ENETUNREACH",
            "ENETDOWN",
            "ENETRESET",
            "EPIPE",
            "ENOTCONN",
            "ESHUTDOWN",
            "EADDRNOTAVAIL",
        )
    )
    if code is not None
)


# ------------------------------------------------------------------------------ inspection


def _attr(obj: object, name: str) -> object:
    """``obj.name``, or ``None`` when it is missing or its property raises."""
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises is a missing value, never our caller's problem
        return None


def _item(mapping: object, key: str) -> object:
    """``mapping.get(key)`` for a real ``Mapping``, else ``None``; never raises."""
    if not isinstance(mapping, Mapping):
        return None
    try:
        value: object = mapping.get(key)
    except Exception:  # a user mapping whose .get raises
        return None
    return value


def _is_int(value: object) -> bool:
    """An ``int`` (IntEnum such as ``http.HTTPStatus`` included), but not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def _http_status(exc: BaseException) -> int | None:
    """The first plausible HTTP status (100-599) on the exception or its response."""
    response = _attr(exc, "response")
    for owner, name in (
        (exc, "status_code"),
        (exc, "status"),
        (response, "status_code"),
        (response, "status"),
    ):
        value = _attr(owner, name)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return int(value)
    return None


def _body_type(exc: BaseException) -> str | None:
    """The error type the body names: ``body["error"]["type"]``, else ``body["type"]``."""
    body = _attr(exc, "body")
    error = _item(body, "error")
    kind = _item(error, "type") if isinstance(error, Mapping) else _item(body, "type")
    return kind if isinstance(kind, str) else None


# ------------------------------------------------------------------------------ groups

#: The most exceptions (subgroups and leaves) looked at inside one exception group. A real
#: task group holds a handful; the bound keeps a pathological one (nested 100,000 deep, 100,000
#: wide, or a subclass whose ``exceptions`` contains itself) from costing more than a
#: millisecond or two per failure, and the walk is a loop, so depth never means recursion.
_GROUP_LIMIT: Final = 1000


def _members(group: BaseException, room: int) -> tuple[BaseException, ...] | None:
    """A group's direct members; ``None`` if they cannot be read or number more than *room*."""
    members = _attr(group, "exceptions")  # a subclass may make it a property that raises
    if (
        not isinstance(members, tuple)
        or len(members) > room
        or not all(isinstance(member, BaseException) for member in members)
    ):
        return None
    return members


def _common_kind(
    group: BaseException, decide: Callable[[BaseException], ErrorKind | None]
) -> ErrorKind:
    """
    The kind *group*'s leaves agree on, else ``unknown``.

    *decide* answers for one member: its kind, or ``None`` for a subgroup whose own members
    decide. Members are visited depth first, in order, and the walk stops at the first
    ``unknown`` or disagreement (a later member's rule is then not run); a group too big to
    read (see ``_GROUP_LIMIT``) is ``unknown``.
    """
    room = _GROUP_LIMIT
    members = _members(group, room)
    if members is None:
        return _U
    room -= len(members)
    pending = list(reversed(members))
    found: ErrorKind | None = None
    while pending:
        exc = pending.pop()
        kind = decide(exc)
        if kind is None:
            members = _members(exc, room)
            if members is None:
                return _U
            room -= len(members)
            pending.extend(reversed(members))
        elif kind is _U or (found is not None and kind is not found):
            return _U
        else:
            found = kind
    return _U if found is None else found  # None: only empty subgroups, which a subclass can fake


def _walk(group: BaseException) -> Iterator[BaseException]:
    """Every exception inside *group*, subgroups included, depth first; at most the limit."""
    room = _GROUP_LIMIT
    pending = [group]
    while pending:
        exc = pending.pop()
        if not isinstance(exc, BaseExceptionGroup):
            continue
        members = _members(exc, room)
        if members is None:
            return  # unreadable, or past the limit: what was read so far stands
        room -= len(members)
        yield from members
        pending.extend(reversed(members))


# ------------------------------------------------------------------------------ classify


def _own_kind(exc: BaseException) -> ErrorKind | None:
    """*exc*'s kind by everything but its members; ``None`` for a group that has none."""
    status = _http_status(exc)
    if status is not None and status >= 400:
        return _STATUS_KINDS.get(status, _T if status >= 500 else _P)
    body_type = _body_type(exc)
    if body_type is not None and body_type in _BODY_KINDS:
        return _BODY_KINDS[body_type]
    if isinstance(exc, BaseExceptionGroup):
        return None
    for cls in type(exc).__mro__:
        kind = _NAME_KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    if isinstance(exc, OSError):
        code = _attr(exc, "errno")
        if _is_int(code) and code in _NETWORK_ERRNOS:
            return _T
    return _U


def classify(exc: BaseException) -> ErrorKind:
    """
    The kind of failure *exc* is, from its status, body, class and errno.

    The rules and their order are in the module docstring; in short, the first that applies
    wins: an HTTP error status (429 rate_limited; 408, 425, 5xx transient; 401, 403, 407 auth;
    400, 404, 405, 409, 410, 413, 422 invalid_input; other 4xx permanent), then a retryable error
    type in the body (``overloaded_error``, ``api_error``, ``timeout_error``, ``server_error``
    transient; ``rate_limit_error`` rate_limited), then, for an exception group, its leaves'
    common kind (``unknown`` when they disagree), then well-known class names in the MRO
    (``json.JSONDecodeError`` and ``UnicodeDecodeError`` unknown before ``ValueError``
    invalid_input), then an ``OSError`` with a network errno (transient).

    Args:
        exc: any exception; it is only read.

    Returns:
        Its :class:`ErrorKind`; :attr:`ErrorKind.UNKNOWN` when nothing applies.

    Never raises, whatever the exception's attributes do, however deep a group is nested.
    """
    kind = _own_kind(exc)
    return _common_kind(exc, _own_kind) if kind is None else kind


def _kind_or_unknown(classifier: Callable[[BaseException], ErrorKind], exc: Exception) -> ErrorKind:
    """
    *exc*'s kind by *classifier*, for a runtime that must go on: a classifier rule that
    raises must not replace the call's own error, so the kind is ``unknown`` and the rule's
    error is chained to *exc* as its ``__context__``.
    """
    try:
        return classifier(exc)
    except Exception as rule_error:
        if exc.__context__ is None and rule_error is not exc:
            exc.__context__ = rule_error
        return ErrorKind.UNKNOWN


# ------------------------------------------------------------------------------ Classifier


@runtime_checkable
class ErrorClassifier(Protocol):
    """Anything that sorts an exception into a kind: :func:`classify`, a :class:`Classifier`."""

    def __call__(self, exc: BaseException, /) -> ErrorKind: ...


#: A rule's matcher: an exception type, a tuple of them, or a predicate ``(exc) -> bool``.
Matcher = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], object]

_A_MATCHER = "an exception type, a tuple of them, or a predicate (exc) -> bool"
_KIND_VALUES = ", ".join(repr(kind.value) for kind in ErrorKind)


def _is_async_callable(fn: object) -> bool:
    """An ``async def`` behind partials, ``functools.wraps`` or an async ``__call__``."""
    # Unwrap partials and __wrapped__ chains in any nesting; the bound stops a cycle.
    for _ in range(100):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        inner = _attr(fn, "__wrapped__")
        if inner is None:
            break
        fn = inner
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    return inspect.iscoroutinefunction(_attr(type(fn), "__call__"))


def _check_matcher(where: str, matcher: object) -> Matcher:
    if isinstance(matcher, type):
        if issubclass(matcher, BaseException):
            return matcher
    elif isinstance(matcher, tuple):
        for item in matcher:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                msg = f"{where} matcher must be {_A_MATCHER}; the tuple holds {item!r}"
                raise TypeError(msg)
        if matcher:
            return matcher
    elif callable(matcher):
        if _is_async_callable(matcher):
            msg = (
                f"{where} matcher must be a plain predicate (exc) -> bool, got the async"
                f" callable {matcher!r}: its coroutine would always count as a match"
            )
            raise TypeError(msg)
        predicate: Callable[[BaseException], object] = matcher
        return predicate
    msg = f"{where} matcher must be {_A_MATCHER}, got {matcher!r} of type {type(matcher).__name__}"
    raise TypeError(msg)


def _check_kind(where: str, kind: object) -> ErrorKind:
    if isinstance(kind, ErrorKind):
        return kind
    if isinstance(kind, str):
        try:
            return ErrorKind(kind)
        except ValueError:
            msg = f"{where} kind must be an ErrorKind or one of {_KIND_VALUES}, got {kind!r}"
            raise ValueError(msg) from None
    msg = (
        f"{where} kind must be an ErrorKind or one of {_KIND_VALUES},"
        f" got {kind!r} of type {type(kind).__name__}"
    )
    raise TypeError(msg)


def _to_rules(
    rules: Sequence[tuple[Matcher, ErrorKind | str]],
) -> tuple[tuple[Matcher, ErrorKind], ...]:
    """Check every rule once, at construction, and name the index of a wrong one."""
    value: object = rules  # users pass anything; check it all
    if not isinstance(value, list | tuple):
        msg = (
            "'rules' must be a list or tuple of (matcher, kind) pairs,"
            f" got {value!r} of type {type(value).__name__}"
        )
        raise TypeError(msg)
    checked: list[tuple[Matcher, ErrorKind]] = []
    for index, rule in enumerate(value):
        where = f"'rules'[{index}]"
        if not (isinstance(rule, list | tuple) and len(rule) == 2):
            msg = (
                f"{where} must be a (matcher, kind) pair, got {rule!r} of type"
                f" {type(rule).__name__}"
            )
            raise TypeError(msg)
        matcher, kind = rule
        checked.append((_check_matcher(where, matcher), _check_kind(where, kind)))
    return tuple(checked)


@final
@attrs.frozen(kw_only=True)
class Classifier:
    """
    :func:`classify` with your own rules in front: the first matching rule wins.

    ::

        Classifier(rules=[
            (MyQuotaError, ErrorKind.PERMANENT),
            ((KeyError, IndexError), ErrorKind.UNKNOWN),
            (lambda exc: "try again" in str(exc), ErrorKind.TRANSIENT),
        ])

    Args:
        rules: ``(matcher, kind)`` pairs, tried in order. A matcher is an exception type, a
            tuple of them (``isinstance``), or a predicate ``(exc) -> bool`` (a plain function:
            an ``async def`` is rejected). A kind is an :class:`ErrorKind` or its value
            (``"transient"``), as a configuration file would spell it. When no rule matches,
            :func:`classify` decides.

    An exception group is tried against the rules as a whole first (a rule for
    ``ExceptionGroup``, or a broad one for ``Exception``, wins there); when none matches, each
    member is classified the same way (the rules, then for a subgroup its own members, then
    :func:`classify`'s rules for a leaf), and the group takes its leaves' common kind, else
    ``unknown``. So a rule for your client's error applies inside a task group too.

    Calling it, ``classifier(exc)``, returns the :class:`ErrorKind`. A predicate that raises
    propagates its exception unchanged: the classifier cannot know what a broken rule meant.
    The runtime chains that error to the call's own error (which is what reaches the caller)
    and the dependency's actor keeps working.

    Raises:
        TypeError: *rules* is not a list or tuple of pairs, a matcher is none of the three
            forms or is asynchronous, or a kind is not a string (the message names the index).
        ValueError: a kind is a string that names no :class:`ErrorKind`.
    """

    rules: tuple[tuple[Matcher, ErrorKind], ...] = attrs.field(default=(), converter=_to_rules)

    def __call__(self, exc: BaseException, /) -> ErrorKind:
        """
        The kind of *exc*: the first matching rule's, else :func:`classify`'s (for a group,
        its members' by these rules, as the class docstring says).

        Raises:
            TypeError: a predicate returned an awaitable (a lambda around an async function).
            Exception: whatever a predicate raises (on the exception or on a member of its
                group), unchanged.
        """
        kind = self._decide(exc)
        return _common_kind(exc, self._decide) if kind is None else kind

    def _decide(self, exc: BaseException) -> ErrorKind | None:
        """The first matching rule's kind, else ``_own_kind`` (``None``: a group's members)."""
        for index, (matcher, kind) in enumerate(self.rules):
            if isinstance(matcher, type | tuple):
                if isinstance(exc, matcher):
                    return kind
                continue
            verdict = matcher(exc)
            if inspect.isawaitable(verdict):
                if inspect.iscoroutine(verdict):
                    verdict.close()  # never awaited by design; close it so Python does not warn
                msg = (
                    f"'rules'[{index}] predicate {matcher!r} returned an awaitable: predicates"
                    " must be plain functions returning a bool"
                )
                raise TypeError(msg)
            if verdict:
                return kind
        return _own_kind(exc)


# ------------------------------------------------------------------------------ Retry-After

# RFC 9110 section 10.2.3: ``Retry-After = HTTP-date / delay-seconds`` and delay-seconds is
# ``1*DIGIT``. A decimal fraction is accepted too (openai's SDK does, and some gateways send
# "1.5"); a sign, an exponent, "inf" and "nan" are not numbers here.
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)


def _seconds(text: str, divisor: float) -> float | None:
    """Delay-seconds (or milliseconds, with *divisor* 1000) from a header, else ``None``."""
    text = text.strip()
    if not _DELAY.fullmatch(text):
        return None
    # A digit string too long for a float gives inf: a huge delay, capped by the caller.
    return float(text) / divisor


def _date_delay(text: str, now: float | None) -> float | None:
    """Seconds from *now* until the HTTP-date in *text* (0.0 if past), else ``None``."""
    when = _timestamp(text)
    if when is None or now is None:
        return None
    return max(0.0, when - now)


def _timestamp(text: str) -> float | None:
    """The HTTP-date in *text* as seconds since the epoch, else ``None``."""
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
        if when.tzinfo is None:  # "-0000" parses naive; an HTTP-date is always GMT
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    except Exception:  # ValueError, TypeError, OverflowError: not a date we can use
        return None


def _headers_delay(headers: object, now: float | None) -> float | None:
    """``retry-after-ms``, then ``retry-after``, from any mapping-like header object."""
    items = _attr(headers, "items")
    if not callable(items):
        return None
    found: dict[str, str] = {}
    try:
        # Case-insensitive by hand: httpx.Headers and multidict are, a plain dict is not.
        # items() also serves http.client.HTTPMessage (urllib), which is no Mapping.
        for key, value in items():
            name = key.decode("latin-1") if isinstance(key, bytes) else key
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if isinstance(name, str) and isinstance(text, str):
                found.setdefault(name.lower(), text)
    except Exception:  # a Mock, a header object that breaks while we read it
        return None
    if "retry-after-ms" in found:
        delay = _seconds(found["retry-after-ms"], 1000.0)
        if delay is not None:
            return delay
    if "retry-after" in found:
        text = found["retry-after"]
        delay = _seconds(text, 1.0)
        if delay is not None:
            return delay
        if now is None:  # the response's own Date: the server's clock, as its date is
            now = _timestamp(found.get("date", ""))
        return _date_delay(text, now)
    return None


def _hint_seconds(hint: object) -> float | None:
    """A numeric ``retry_after`` attribute as seconds, else ``None``."""
    if not isinstance(hint, int | float) or isinstance(hint, bool):
        return None
    try:
        seconds = float(hint)
    except OverflowError:  # an int beyond float range: a huge delay, capped by the caller
        return math.inf if hint > 0 else None
    # The attribute is a number already, so inf is a sentinel rather than a huge delay:
    # ringfence's own BreakerOpen says inf for "isolated until an operator acts".
    return seconds if 0.0 <= seconds < math.inf else None


def retry_after(
    exc: BaseException, *, now: float | None = None, cap: float = 300.0
) -> float | None:
    """
    Seconds the server asked us to wait before the next request, if *exc* says so.

    Looked for in this order, the first usable value winning:

    1. a numeric ``exc.retry_after`` attribute (an ``int`` or ``float``, never a ``bool``);
    2. the headers on ``exc.headers``, then on ``exc.response.headers`` (httpx, aiohttp, the
       openai and anthropic SDKs, starlette, urllib), names compared case-insensitively:
       ``retry-after-ms`` (milliseconds, as openai and anthropic send it), then
       ``retry-after`` as delta-seconds (an integer, or a decimal) or as an HTTP date
       (``Wed, 21 Oct 2015 07:28:00 GMT``), which gives the date minus *now*, and 0.0 for a
       date already past.

    A negative, NaN, infinite or unparsable value is ignored, as if it were absent; a value
    above *cap* gives *cap*. For an exception group (a task group's failures) it is the
    largest hint the group or any exception inside it carries, through nested groups: every
    one of them asked for that long.

    Args:
        exc: any exception; it is only read.
        now: the current wall-clock time in seconds since the epoch (``time.time()``), the
            clock HTTP dates are on. Passed in: policies read no clock. Omitted, an HTTP
            date is measured from the same response's ``Date`` header (the server's own
            clock, which also spares the client's clock skew), and ignored without one;
            seconds and ``retry-after-ms`` need no clock at all.
        cap: the longest wait this returns, in seconds (``>= 0``, finite). A server asking
            for an hour is usually a misconfigured one, and a caller cannot wait that long.

    Returns:
        Seconds, ``0.0 <= result <= cap``; ``None`` when the exception carries no usable
        delay.

    Raises:
        TypeError, ValueError: *now* or *cap* is not a finite number, or *cap* is negative
            (a programming error). Nothing about *exc* ever makes this raise.
    """
    if now is not None:
        check_number("now", now)
    check_number("cap", cap, ge=0.0)
    longest = _own_retry_after(exc, now, float(cap))
    if isinstance(exc, BaseExceptionGroup):
        for member in _walk(exc):
            delay = _own_retry_after(member, now, float(cap))
            if delay is not None and (longest is None or delay > longest):
                longest = delay
    return longest


def _own_retry_after(exc: BaseException, now: float | None, cap: float) -> float | None:
    """The hint *exc* itself carries (not its members), at most *cap*; else ``None``."""
    seconds = _hint_seconds(_attr(exc, "retry_after"))
    if seconds is not None:
        return min(seconds, cap)
    for headers in (_attr(exc, "headers"), _attr(_attr(exc, "response"), "headers")):
        delay = _headers_delay(headers, now)
        if delay is not None:
            return min(delay, cap)
    return None
