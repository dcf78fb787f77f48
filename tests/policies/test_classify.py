"""classify() and Classifier against real exceptions built by httpx, aiohttp, openai, anthropic."""

from __future__ import annotations

import ast
import errno
import functools
import http.client
import importlib
import io
import json
import socket
import ssl
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, Mock

import pytest

from policies.classify import Classifier, ErrorClassifier, ErrorKind, classify
from supervisor import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    DeadlineExceeded,
    DependencyCrashed,
    SupervisorClosed,
    UnknownDependency,
)

from ._real_clients import (
    aiohttp_connector_error,
    aiohttp_response_error,
    anthropic_body,
    anthropic_message_start,
    fail,
    httpx_status_error,
    openai_body,
    require,
    respond,
    sdk_error,
    sdk_http,
    stream,
)

T = ErrorKind.TRANSIENT
R = ErrorKind.RATE_LIMITED
P = ErrorKind.PERMANENT
A = ErrorKind.AUTH
I = ErrorKind.INVALID_INPUT  # noqa: E741
U = ErrorKind.UNKNOWN

Build = Callable[[], BaseException]


def test_error_kind_is_a_str_enum_of_six_kinds() -> None:
    """The six kinds compare equal to their names, as logs and config files spell them."""
    assert [
        "transient",
        "rate_limited",
        "permanent",
        "auth",
        "invalid_input",
        "unknown",
    ] == list(ErrorKind)
    assert "rate_limited" == str(ErrorKind.RATE_LIMITED)


# ------------------------------------------------------------------------------ HTTP statuses

STATUSES = [
    (429, R),
    (408, T),
    (425, T),
    (500, T),
    (502, T),
    (503, T),
    (504, T),
    (529, T),
    (520, T),  # "other 5xx"
    (599, T),
    (401, A),
    (403, A),
    (407, A),
    (400, I),
    (404, I),
    (405, I),
    (409, I),
    (410, I),
    (413, I),
    (422, I),
    (402, P),  # "other 4xx"
    (418, P),
    (499, P),
]


class _StatusCode(Exception):
    def __init__(self, status: object) -> None:
        self.status_code = status


@pytest.mark.parametrize(("status", "kind"), STATUSES)
def test_status_table(status: int, kind: ErrorKind) -> None:
    """Every status of DESIGN's table, on a plain `status_code` attribute."""
    assert kind == classify(_StatusCode(status))


@pytest.mark.parametrize(("status", "kind"), STATUSES)
def test_httpx_status_error(status: int, kind: ErrorKind) -> None:
    """httpx's HTTPStatusError from raise_for_status() carries the status on .response."""
    assert kind == classify(httpx_status_error(status))


@pytest.mark.parametrize(("status", "kind"), STATUSES)
def test_aiohttp_client_response_error(status: int, kind: ErrorKind) -> None:
    """aiohttp's ClientResponseError carries the status on .status."""
    assert kind == classify(aiohttp_response_error(status))


def test_urllib_http_error() -> None:
    """The standard library's urllib HTTPError (an OSError too) is read by its status."""
    error = urllib.error.HTTPError(
        "http://dependency.test", 503, "busy", http.client.HTTPMessage(), io.BytesIO()
    )
    assert T == classify(error)


# ------------------------------------------------------------------------------ each library


def _httpx(name: str) -> Build:
    def build() -> BaseException:
        httpx = require("httpx")
        error: BaseException = getattr(httpx, name)("boom")
        return error

    return build


def _aiohttp(name: str, *args: object) -> Build:
    def build() -> BaseException:
        error: BaseException = getattr(require("aiohttp"), name)(*args)
        return error

    return build


def _sdk(sdk: str, handler: Any, *, streaming: bool = False) -> Build:
    return lambda: sdk_error(sdk, handler, streaming=streaming)


HTTPX = [
    pytest.param(_httpx("ConnectError"), T, id="ConnectError"),
    pytest.param(_httpx("ReadTimeout"), T, id="ReadTimeout"),
    pytest.param(_httpx("ConnectTimeout"), T, id="ConnectTimeout"),
    pytest.param(_httpx("PoolTimeout"), T, id="PoolTimeout"),
    pytest.param(_httpx("WriteError"), T, id="WriteError"),
    pytest.param(_httpx("RemoteProtocolError"), T, id="RemoteProtocolError"),
    pytest.param(_httpx("ProxyError"), T, id="ProxyError"),
    pytest.param(_httpx("UnsupportedProtocol"), I, id="UnsupportedProtocol"),
    pytest.param(_httpx("LocalProtocolError"), I, id="LocalProtocolError"),
    pytest.param(_httpx("InvalidURL"), I, id="InvalidURL"),
    pytest.param(_httpx("TooManyRedirects"), P, id="TooManyRedirects"),
    pytest.param(_httpx("DecodingError"), U, id="DecodingError"),
    pytest.param(lambda: httpx_status_error(429), R, id="HTTPStatusError-429"),
    pytest.param(lambda: httpx_status_error(503), T, id="HTTPStatusError-503"),
    pytest.param(lambda: httpx_status_error(401), A, id="HTTPStatusError-401"),
    pytest.param(lambda: httpx_status_error(400), I, id="HTTPStatusError-400"),
]

AIOHTTP = [
    pytest.param(
        lambda: aiohttp_connector_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
        T,
        id="ClientConnectorError",
    ),
    pytest.param(
        lambda: aiohttp_connector_error(
            socket.gaierror(socket.EAI_NONAME, "no name"), "ClientConnectorDNSError"
        ),
        T,
        id="ClientConnectorDNSError",
    ),
    pytest.param(
        lambda: aiohttp_connector_error(
            ssl.SSLCertVerificationError(1, "bad cert"), "ClientConnectorCertificateError"
        ),
        P,
        id="ClientConnectorCertificateError",
    ),
    pytest.param(_aiohttp("ServerDisconnectedError"), T, id="ServerDisconnectedError"),
    pytest.param(_aiohttp("ServerTimeoutError"), T, id="ServerTimeoutError"),
    pytest.param(_aiohttp("ConnectionTimeoutError"), T, id="ConnectionTimeoutError"),
    pytest.param(_aiohttp("ClientOSError", errno.ECONNRESET, "reset"), T, id="ClientOSError"),
    pytest.param(_aiohttp("ClientPayloadError", "truncated"), T, id="ClientPayloadError"),
    pytest.param(
        _aiohttp("ServerFingerprintMismatch", b"a", b"b", "h", 443),
        P,
        id="ServerFingerprintMismatch",
    ),
    pytest.param(_aiohttp("InvalidURL", "not a url"), I, id="InvalidURL"),
    pytest.param(lambda: aiohttp_response_error(429), R, id="ClientResponseError-429"),
    pytest.param(lambda: aiohttp_response_error(503), T, id="ClientResponseError-503"),
    pytest.param(
        lambda: aiohttp_response_error(407, cls="ClientHttpProxyError"),
        A,
        id="ClientHttpProxyError-407",
    ),
    pytest.param(
        lambda: aiohttp_response_error(200, cls="ContentTypeError"), U, id="ContentTypeError-200"
    ),
    pytest.param(lambda: aiohttp_response_error(0), U, id="ClientResponseError-no-status"),
]

OPENAI = [
    pytest.param(
        _sdk("openai", respond(429, openai_body("requests", "rate_limit_exceeded"))),
        R,
        id="RateLimitError",
    ),
    pytest.param(
        _sdk("openai", respond(429, openai_body("insufficient_quota", "insufficient_quota"))),
        R,
        id="RateLimitError-insufficient_quota",
    ),
    pytest.param(
        _sdk("openai", respond(401, openai_body("invalid_request_error", "invalid_api_key"))),
        A,
        id="AuthenticationError",
    ),
    pytest.param(
        _sdk("openai", respond(403, openai_body("invalid_request_error"))),
        A,
        id="PermissionDeniedError",
    ),
    pytest.param(
        _sdk("openai", respond(400, openai_body("invalid_request_error"))),
        I,
        id="BadRequestError",
    ),
    pytest.param(
        _sdk("openai", respond(404, openai_body("invalid_request_error"))), I, id="NotFoundError"
    ),
    pytest.param(
        _sdk("openai", respond(422, openai_body("invalid_request_error"))),
        I,
        id="UnprocessableEntityError",
    ),
    pytest.param(
        _sdk("openai", respond(500, openai_body("server_error"))), T, id="InternalServerError"
    ),
    pytest.param(
        _sdk("openai", respond(503, openai_body("server_error"))),
        T,
        id="InternalServerError-503",
    ),
    pytest.param(_sdk("openai", fail("ConnectError")), T, id="APIConnectionError"),
    pytest.param(_sdk("openai", fail("ReadTimeout")), T, id="APITimeoutError"),
    pytest.param(
        _sdk("openai", stream((None, openai_body("server_error"))), streaming=True),
        T,
        id="APIError-mid-stream-server_error",
    ),
    pytest.param(
        _sdk("openai", stream((None, openai_body("invalid_request_error"))), streaming=True),
        U,
        id="APIError-mid-stream-other",
    ),
]

ANTHROPIC = [
    pytest.param(
        _sdk("anthropic", respond(429, anthropic_body("rate_limit_error"))),
        R,
        id="RateLimitError",
    ),
    pytest.param(
        _sdk("anthropic", respond(401, anthropic_body("authentication_error"))),
        A,
        id="AuthenticationError",
    ),
    pytest.param(
        _sdk("anthropic", respond(403, anthropic_body("permission_error"))),
        A,
        id="PermissionDeniedError",
    ),
    pytest.param(
        _sdk("anthropic", respond(400, anthropic_body("invalid_request_error"))),
        I,
        id="BadRequestError",
    ),
    pytest.param(
        _sdk("anthropic", respond(404, anthropic_body("not_found_error"))),
        I,
        id="NotFoundError",
    ),
    pytest.param(
        _sdk("anthropic", respond(413, anthropic_body("request_too_large"))),
        I,
        id="ContentTooLargeError",
    ),
    pytest.param(
        _sdk("anthropic", respond(402, anthropic_body("billing_error"))),
        P,
        id="PaymentRequiredError",
    ),
    pytest.param(
        _sdk("anthropic", respond(500, anthropic_body("api_error"))),
        T,
        id="InternalServerError",
    ),
    pytest.param(
        _sdk("anthropic", respond(503, anthropic_body("api_error"))),
        T,
        id="ServiceUnavailableError",
    ),
    pytest.param(
        _sdk("anthropic", respond(504, anthropic_body("timeout_error"))),
        T,
        id="GatewayTimeoutError",
    ),
    pytest.param(
        _sdk("anthropic", respond(529, anthropic_body("overloaded_error"))),
        T,
        id="OverloadedError-529",
    ),
    pytest.param(_sdk("anthropic", fail("ConnectError")), T, id="APIConnectionError"),
    pytest.param(_sdk("anthropic", fail("ReadTimeout")), T, id="APITimeoutError"),
    pytest.param(
        _sdk(
            "anthropic",
            stream(anthropic_message_start(), ("error", anthropic_body("overloaded_error"))),
            streaming=True,
        ),
        T,
        id="APIStatusError-200-mid-stream-overloaded_error",
    ),
    pytest.param(
        _sdk(
            "anthropic",
            stream(anthropic_message_start(), ("error", anthropic_body("api_error"))),
            streaming=True,
        ),
        T,
        id="APIStatusError-200-mid-stream-api_error",
    ),
    pytest.param(
        _sdk(
            "anthropic",
            stream(anthropic_message_start(), ("error", anthropic_body("rate_limit_error"))),
            streaming=True,
        ),
        R,
        id="APIStatusError-200-mid-stream-rate_limit_error",
    ),
    pytest.param(
        _sdk(
            "anthropic",
            stream(anthropic_message_start(), ("error", anthropic_body("invalid_request_error"))),
            streaming=True,
        ),
        U,
        id="APIStatusError-200-mid-stream-other",
    ),
]


@pytest.mark.parametrize(("build", "kind"), HTTPX)
def test_httpx(build: Build, kind: ErrorKind) -> None:
    """httpx's exceptions, as the library constructs them."""
    assert kind == classify(build())


@pytest.mark.parametrize(("build", "kind"), AIOHTTP)
def test_aiohttp(build: Build, kind: ErrorKind) -> None:
    """aiohttp's exceptions, as the library constructs them."""
    assert kind == classify(build())


@pytest.mark.parametrize(("build", "kind"), OPENAI)
def test_openai(build: Build, kind: ErrorKind) -> None:
    """The errors the openai SDK raises (max_retries=0) for a fake server's answers."""
    assert kind == classify(build())


@pytest.mark.parametrize(("build", "kind"), ANTHROPIC)
def test_anthropic(build: Build, kind: ErrorKind) -> None:
    """The errors the anthropic SDK raises (max_retries=0) for a fake server's answers."""
    assert kind == classify(build())


def test_sdk_errors_are_the_classes_the_tables_name() -> None:
    """The fake servers make the SDKs raise the classes the README's tables list."""
    openai = require("openai")
    anthropic = require("anthropic")
    raised = [
        sdk_error("openai", respond(429, openai_body("requests"))),
        sdk_error("openai", fail("ReadTimeout")),
        sdk_error("openai", stream((None, openai_body("server_error"))), streaming=True),
        sdk_error("anthropic", respond(529, anthropic_body("overloaded_error"))),
        sdk_error(
            "anthropic",
            stream(anthropic_message_start(), ("error", anthropic_body("overloaded_error"))),
            streaming=True,
        ),
    ]
    assert [
        openai.RateLimitError,
        openai.APITimeoutError,
        openai.APIError,
        getattr(anthropic, "OverloadedError", anthropic.InternalServerError),
        anthropic.APIStatusError,
    ] == [type(error) for error in raised]
    assert 200 == raised[-1].status_code  # the mid-stream overload: a 200 with an error body


@pytest.mark.parametrize(
    ("sdk_name", "cls", "status", "body", "kind"),
    [
        ("openai", "RateLimitError", 429, openai_body("requests")["error"], R),
        ("openai", "InternalServerError", 500, openai_body("server_error")["error"], T),
        ("anthropic", "RateLimitError", 429, anthropic_body("rate_limit_error"), R),
        ("anthropic", "APIStatusError", 200, anthropic_body("overloaded_error"), T),
    ],
)
def test_sdk_errors_built_directly(
    sdk_name: str, cls: str, status: int, body: object, kind: ErrorKind
) -> None:
    """Errors built by hand the way the SDKs build them: (message, response=, body=)."""
    sdk = require(sdk_name)
    http = sdk_http(sdk)
    response = http.Response(status, request=http.Request("POST", "http://dependency.test"))
    assert kind == classify(getattr(sdk, cls)("message", response=response, body=body))


# ------------------------------------------------------------------------------ builtins, own


class AttemptTimeoutLookalike(TimeoutError):
    """Named like ringfence's, defined elsewhere: matched by name, as policies/ must."""


AttemptTimeoutLookalike.__name__ = "AttemptTimeout"


class RateLimited(Exception):
    """A user's own rate-limit error (the demo had one), matched by name."""


BUILTINS = [
    pytest.param(TimeoutError(), T, id="TimeoutError"),
    pytest.param(ConnectionError(), T, id="ConnectionError"),
    pytest.param(ConnectionRefusedError(), T, id="ConnectionRefusedError"),
    pytest.param(ConnectionResetError(), T, id="ConnectionResetError"),
    pytest.param(BrokenPipeError(), T, id="BrokenPipeError"),
    pytest.param(socket.gaierror(socket.EAI_NONAME, "no name"), T, id="gaierror"),
    pytest.param(OSError(errno.ENETUNREACH, "unreachable"), T, id="OSError-ENETUNREACH"),
    pytest.param(OSError(errno.EHOSTUNREACH, "unreachable"), T, id="OSError-EHOSTUNREACH"),
    pytest.param(OSError(errno.ETIMEDOUT, "timed out"), T, id="OSError-ETIMEDOUT"),
    pytest.param(OSError(errno.ENOENT, "no file"), U, id="OSError-ENOENT"),
    pytest.param(OSError("no errno"), U, id="OSError-no-errno"),
    pytest.param(FileNotFoundError(), U, id="FileNotFoundError"),
    pytest.param(ssl.SSLCertVerificationError(1, "bad cert"), P, id="SSLCertVerificationError"),
    pytest.param(ValueError(), I, id="ValueError"),
    # An answer that cannot be parsed is the dependency's failure, not the caller's input;
    # encoding the caller's own text (a header, an IDNA host name) is the caller's.
    pytest.param(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), U, id="UnicodeDecodeError"),
    pytest.param(json.JSONDecodeError("Expecting value", "<html>", 0), U, id="JSONDecodeError"),
    pytest.param(UnicodeEncodeError("latin-1", "\u20ac", 0, 1, "bad"), I, id="UnicodeEncodeError"),
    pytest.param(UnicodeTranslateError("\u20ac", 0, 1, "bad"), I, id="UnicodeTranslateError"),
    pytest.param(UnicodeError("label too long"), I, id="UnicodeError"),
    pytest.param(TypeError(), I, id="TypeError"),
    pytest.param(KeyError("k"), I, id="KeyError"),
    pytest.param(IndexError(), U, id="IndexError"),
    pytest.param(RuntimeError(), U, id="RuntimeError"),
    pytest.param(Exception(), U, id="Exception"),
    pytest.param(KeyboardInterrupt(), U, id="KeyboardInterrupt"),
    pytest.param(AttemptTimeoutLookalike(), T, id="AttemptTimeout-by-name"),
    pytest.param(RateLimited(), R, id="RateLimited-by-name"),
]


@pytest.mark.parametrize(("exc", "kind"), BUILTINS)
def test_builtins(exc: BaseException, kind: ErrorKind) -> None:
    """Builtin exceptions by class, OS errors by errno."""
    assert kind == classify(exc)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(AttemptTimeout("db", 1.0), T, id="AttemptTimeout"),
        pytest.param(DeadlineExceeded("db", 5.0), T, id="DeadlineExceeded"),
        pytest.param(BreakerOpen("db", 3.0), T, id="BreakerOpen"),
        pytest.param(BulkheadFull("db", 4, 0), T, id="BulkheadFull"),
        pytest.param(DependencyCrashed("db", RuntimeError(), down=False), T, id="Crashed"),
        pytest.param(SupervisorClosed("left"), P, id="SupervisorClosed"),
        pytest.param(UnknownDependency("dbb", ["db"]), I, id="UnknownDependency"),
    ],
)
def test_ringfence_errors(exc: BaseException, kind: ErrorKind) -> None:
    """ringfence's own errors, met when one protected function calls another dependency."""
    assert kind == classify(exc)


# ------------------------------------------------------------------------------ precedence


class _Body(Exception):
    def __init__(self, body: object, status_code: object = None) -> None:
        self.body = body
        self.status_code = status_code


class ValueErrorWith503(ValueError):
    status_code = 503


class TransportError(Exception):
    """Named like httpx's base class."""


class UnsupportedProtocol(TransportError):
    """Named like httpx's subclass: the subclass's entry wins."""


class ClientConnectionError(OSError):
    """Named like aiohttp's: the name is found before the errno is looked at."""


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(ValueErrorWith503(), T, id="status-beats-ValueError"),
        pytest.param(
            _Body({"error": {"type": "overloaded_error"}}, 429), R, id="status-beats-body"
        ),
        pytest.param(_Body({"error": {"type": "overloaded_error"}}, 200), T, id="body-at-200"),
        pytest.param(_Body({"type": "rate_limit_error"}), R, id="unwrapped-body"),
        pytest.param(_Body({"type": "error", "error": "text"}), U, id="error-not-a-mapping"),
        pytest.param(
            _Body({"type": "error", "error": {"type": "invalid_request_error"}}, 200),
            U,
            id="non-retry-body-type",
        ),
        pytest.param(UnsupportedProtocol(), I, id="subclass-name-first"),
        pytest.param(TransportError(), T, id="base-name"),
        pytest.param(ClientConnectionError(errno.ENOENT, "x"), T, id="name-before-errno"),
    ],
)
def test_precedence(exc: BaseException, kind: ErrorKind) -> None:
    """Status, then a retryable body type, then names (most derived first), then errno."""
    assert kind == classify(exc)


# ------------------------------------------------------------------------------ defensive


class _Raising(Exception):
    """Every attribute classify() reads raises."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"status_code", "status", "response", "body", "errno", "headers"}:
            raise RuntimeError(f"{name} is not available")
        return super().__getattribute__(name)


class _RaisingOSError(OSError):
    @property
    def errno(self) -> int:  # type: ignore[override]
        raise RuntimeError("no errno")


class _BadMapping(dict[str, object]):
    def get(self, key: str, default: object = None) -> object:
        raise RuntimeError("broken mapping")


class _Response:
    def __init__(self, status: object) -> None:
        self.status = status


class _WithResponse(Exception):
    def __init__(self, response: object) -> None:
        self.response = response


class _Errno(OSError):
    def __init__(self, code: object) -> None:
        self._code = code

    @property
    def errno(self) -> Any:  # type: ignore[override]
        return self._code


def _httpx_error_without_request() -> BaseException:
    httpx = require("httpx")
    error = httpx.ConnectError("boom")
    with pytest.raises(RuntimeError):
        _ = error.request  # the property that raises until the transport sets it
    return error


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        pytest.param(lambda: _StatusCode(True), U, id="bool-status"),
        pytest.param(lambda: _StatusCode("503"), U, id="str-status"),
        pytest.param(lambda: _StatusCode(600), U, id="status-above-599"),
        pytest.param(lambda: _StatusCode(99), U, id="status-below-100"),
        pytest.param(lambda: _StatusCode(200), U, id="success-status"),
        pytest.param(lambda: _StatusCode(Mock()), U, id="mock-status"),
        pytest.param(lambda: _WithResponse(_Response(502)), T, id="response.status"),
        pytest.param(lambda: _WithResponse(Mock()), U, id="mock-response"),
        pytest.param(lambda: _WithResponse(MagicMock()), U, id="magicmock-response"),
        pytest.param(lambda: _Raising(), U, id="properties-raise"),
        pytest.param(lambda: _RaisingOSError(), U, id="errno-raises"),
        pytest.param(lambda: _Errno([errno.ECONNRESET]), U, id="unhashable-errno"),
        pytest.param(lambda: _Errno(True), U, id="bool-errno"),
        pytest.param(lambda: _Body(_BadMapping(error={"type": "api_error"})), U, id="bad-mapping"),
        pytest.param(lambda: _Body("overloaded_error"), U, id="str-body"),
        pytest.param(lambda: _Body({"error": {"type": 529}}), U, id="non-str-type"),
        pytest.param(_httpx_error_without_request, T, id="httpx-request-property-raises"),
    ],
)
def test_inspection_never_raises(build: Build, kind: ErrorKind) -> None:
    """Odd attributes (bools, mocks, raising properties, broken mappings) count as absent."""
    assert kind == classify(build())


def test_classify_module_imports_no_client_library() -> None:
    """Duck typing only: classify.py imports none of the libraries it understands."""
    # import_module, not `import policies.classify as m`: once policies/__init__ exports the
    # function classify, that statement binds the function, not the module.
    module = importlib.import_module("policies.classify")
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert set() == imported & {"httpx", "httpx2", "aiohttp", "openai", "anthropic", "starlette"}


# ------------------------------------------------------------------------------ Classifier


class QuotaError(Exception):
    """A user's exception for the rules."""


def test_classifier_rules_first_match_wins() -> None:
    """Types, tuples and predicates are tried in order; classify() decides the rest."""
    classifier = Classifier(
        rules=[
            (QuotaError, ErrorKind.PERMANENT),
            ((KeyError, IndexError), "unknown"),
            (lambda exc: "try again" in str(exc), ErrorKind.TRANSIENT),
            (QuotaError, ErrorKind.AUTH),  # never reached: the first rule matched already
        ]
    )
    assert [P, U, U, T, I, T] == [
        classifier(QuotaError()),
        classifier(KeyError("k")),
        classifier(IndexError()),
        classifier(RuntimeError("please try again")),
        classifier(ValueError()),
        classifier(TimeoutError()),
    ]


def test_classifier_without_rules_is_classify() -> None:
    """No rules: the classifier answers exactly what classify() answers."""
    excs = [TimeoutError(), ValueError(), RuntimeError(), _StatusCode(429)]
    assert [classify(e) for e in excs] == [Classifier()(e) for e in excs]


def test_classifier_is_frozen_comparable_and_an_error_classifier() -> None:
    """Kinds given as strings are normalised; both classifiers satisfy ErrorClassifier."""
    first = Classifier(rules=[(QuotaError, "permanent")])
    assert Classifier(rules=((QuotaError, ErrorKind.PERMANENT),)) == first
    assert ((QuotaError, ErrorKind.PERMANENT),) == first.rules
    assert isinstance(first, ErrorClassifier)
    assert isinstance(classify, ErrorClassifier)
    with pytest.raises(AttributeError):
        first.rules = ()  # type: ignore[misc]


async def _async_predicate(exc: BaseException) -> bool:
    return True


async def _async_gen_predicate(exc: BaseException) -> Any:
    yield True


class _AsyncCall:
    async def __call__(self, exc: BaseException) -> bool:
        return True

    def __repr__(self) -> str:
        return "<_AsyncCall>"


def _decorated(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


KINDS = "'transient', 'rate_limited', 'permanent', 'auth', 'invalid_input', 'unknown'"
MATCHER = "an exception type, a tuple of them, or a predicate (exc) -> bool"


@pytest.mark.parametrize(
    ("rules", "error", "message"),
    [
        (
            5,
            TypeError,
            "'rules' must be a list or tuple of (matcher, kind) pairs, got 5 of type int",
        ),
        (
            "transient",
            TypeError,
            "'rules' must be a list or tuple of (matcher, kind) pairs, got 'transient' of type str",
        ),
        (
            [ValueError],
            TypeError,
            "'rules'[0] must be a (matcher, kind) pair, got <class 'ValueError'> of type type",
        ),
        (
            [(ValueError, T, 1)],
            TypeError,
            "'rules'[0] must be a (matcher, kind) pair, got (<class 'ValueError'>, "
            "<ErrorKind.TRANSIENT: 'transient'>, 1) of type tuple",
        ),
        (
            [(ValueError, T), (int, T)],
            TypeError,
            f"'rules'[1] matcher must be {MATCHER}, got <class 'int'> of type type",
        ),
        ([(3, T)], TypeError, f"'rules'[0] matcher must be {MATCHER}, got 3 of type int"),
        ([((), T)], TypeError, f"'rules'[0] matcher must be {MATCHER}, got () of type tuple"),
        (
            [((ValueError, "x"), T)],
            TypeError,
            f"'rules'[0] matcher must be {MATCHER}; the tuple holds 'x'",
        ),
        (
            [(ValueError, "fatal")],
            ValueError,
            f"'rules'[0] kind must be an ErrorKind or one of {KINDS}, got 'fatal'",
        ),
        (
            [(ValueError, 1)],
            TypeError,
            f"'rules'[0] kind must be an ErrorKind or one of {KINDS}, got 1 of type int",
        ),
        (
            [(ValueError, T), (_AsyncCall(), T)],
            TypeError,
            "'rules'[1] matcher must be a plain predicate (exc) -> bool, got the async callable"
            " <_AsyncCall>: its coroutine would always count as a match",
        ),
    ],
)
def test_classifier_validation_messages(
    rules: object, error: type[Exception], message: str
) -> None:
    """A wrong rule fails at construction and the message names its index."""
    with pytest.raises(error, match=f"^{__import__('re').escape(message)}$"):
        Classifier(rules=rules)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "predicate",
    [
        pytest.param(_async_predicate, id="async-def"),
        pytest.param(_async_gen_predicate, id="async-generator"),
        pytest.param(functools.partial(_async_predicate), id="partial"),
        pytest.param(_decorated(_async_predicate), id="functools.wraps"),
        pytest.param(functools.partial(_decorated(_async_predicate)), id="partial-of-wraps"),
        pytest.param(_AsyncCall(), id="async-__call__"),
    ],
)
def test_classifier_rejects_async_predicates(predicate: object) -> None:
    """An async predicate would be a coroutine, always true: a TypeError instead."""
    with pytest.raises(TypeError, match=r"^'rules'\[0\] matcher must be a plain predicate"):
        Classifier(rules=[(predicate, T)])  # type: ignore[list-item]


def test_classifier_rejects_an_awaitable_verdict_at_call_time() -> None:
    """A lambda around an async function is caught when called; its coroutine is closed."""
    classifier = Classifier(rules=[(lambda exc: _async_predicate(exc), T)])
    with pytest.raises(TypeError, match=r"^'rules'\[0\] predicate .* returned an awaitable"):
        classifier(ValueError())


class _Awaitable:
    def __await__(self) -> Any:
        yield


def test_classifier_rejects_a_non_coroutine_awaitable_verdict() -> None:
    """Any awaitable verdict is rejected, not only coroutines."""
    classifier = Classifier(rules=[(lambda exc: _Awaitable(), T)])
    with pytest.raises(TypeError, match=r"returned an awaitable"):
        classifier(ValueError())


def test_classifier_rule_error_propagates_unchanged() -> None:
    """A predicate that raises propagates its own exception; the runtime chains it."""
    boom = LookupError("rule bug")

    def broken(exc: BaseException) -> bool:
        raise boom

    classifier = Classifier(rules=[(broken, T)])
    with pytest.raises(LookupError) as caught:
        classifier(ValueError())
    assert boom is caught.value


def test_classifier_accepts_wrapped_sync_predicates_and_a_wrapped_cycle() -> None:
    """Sync predicates behind wraps/partial work; a __wrapped__ cycle is not followed forever."""

    def looped(exc: BaseException) -> bool:
        return isinstance(exc, QuotaError)

    looped.__wrapped__ = looped  # type: ignore[attr-defined]
    classifier = Classifier(
        rules=[(_decorated(functools.partial(looped)), P), (looped, A)],
    )
    assert [P, I] == [classifier(QuotaError()), classifier(ValueError())]


# ------------------------------------------------------------------------------ parse errors


def test_an_answer_that_cannot_be_parsed_is_unknown() -> None:
    """Real parse failures of an answer: httpx's Response.json() and json.loads of bad bytes."""
    httpx = require("httpx")
    with pytest.raises(ValueError) as html:
        httpx.Response(200, text="<html>502 Bad Gateway</html>").json()
    with pytest.raises(ValueError) as latin:
        json.loads(b'{"name": "\xe9"}')
    assert (json.JSONDecodeError, UnicodeDecodeError, U, U) == (
        type(html.value),
        type(latin.value),
        classify(html.value),
        classify(latin.value),
    )


# ------------------------------------------------------------------------------ groups


def _group(*excs: BaseException) -> BaseExceptionGroup[BaseException]:
    return BaseExceptionGroup("task group", list(excs))


def _nested(exc: BaseException, depth: int) -> BaseException:
    for _ in range(depth):
        exc = BaseExceptionGroup("level", [exc])
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(_group(ConnectionError(), ConnectionResetError()), T, id="agree-transient"),
        pytest.param(_group(_StatusCode(429), _StatusCode(429)), R, id="agree-429"),
        pytest.param(_group(_StatusCode(401)), A, id="one-leaf"),
        pytest.param(_group(ValueError(), KeyError("k")), I, id="agree-invalid-input"),
        pytest.param(_group(ConnectionError(), ValueError()), U, id="disagree"),
        pytest.param(_group(_StatusCode(429), _StatusCode(503)), U, id="disagree-429-503"),
        pytest.param(_group(ConnectionError(), RuntimeError()), U, id="an-unknown-leaf"),
        pytest.param(
            _group(_group(TimeoutError(), _group(ConnectionError())), _StatusCode(503)),
            T,
            id="nested-agree",
        ),
        pytest.param(_group(_group(TimeoutError()), _group(ValueError())), U, id="nested-disagree"),
        pytest.param(_group(KeyboardInterrupt()), U, id="base-exception-leaf"),
        pytest.param(_nested(ConnectionError(), 3), T, id="three-deep"),
    ],
)
def test_a_group_takes_its_leaves_common_kind(exc: BaseException, kind: ErrorKind) -> None:
    """A task group's error is its leaves' kind when they all agree, else unknown."""
    assert isinstance(exc, BaseExceptionGroup)
    assert kind == classify(exc)


class _GroupWithStatus(ExceptionGroup[Exception]):
    status_code = 503


class _SelfContaining(ExceptionGroup[Exception]):
    """A group whose ``exceptions`` holds itself: a cycle, as a buggy subclass could make."""

    @property
    def exceptions(self) -> tuple[Exception, ...]:
        return (self, ConnectionError())


class _BrokenExceptions(ExceptionGroup[Exception]):
    @property
    def exceptions(self) -> tuple[Exception, ...]:
        raise RuntimeError("broken property")


def test_a_groups_own_status_beats_its_leaves() -> None:
    """A status on the group itself is the server's verdict, as for any exception."""
    assert T == classify(_GroupWithStatus("g", [ValueError()]))


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _nested(ConnectionError(), 100_000), id="100000-deep"),
        pytest.param(lambda: _group(*[ConnectionError()] * 100_000), id="100000-wide"),
        pytest.param(lambda: _SelfContaining("cycle", [ConnectionError()]), id="cycle"),
        pytest.param(lambda: _BrokenExceptions("broken", [ConnectionError()]), id="broken"),
    ],
)
def test_a_pathological_group_is_unknown_without_raising(build: Build) -> None:
    """Too deep, too wide, a cycle or a raising property: unknown, never RecursionError."""
    assert U == classify(build())
    assert U == Classifier(rules=[(QuotaError, T)])(build())


def test_a_classifier_rule_matching_the_group_itself_wins() -> None:
    """Rules are tried on the group first, as on any exception: first match wins."""
    classifier = Classifier(rules=[(ExceptionGroup, P), (ConnectionError, A)])
    assert P == classifier(_group(ConnectionError(), ConnectionError()))


def test_a_classifier_classifies_the_leaves_with_its_own_rules() -> None:
    """No rule matches the group: each subgroup and leaf gets the rules, then classify()."""
    seen: list[BaseException] = []

    def pool(exc: BaseException) -> bool:
        seen.append(exc)
        return isinstance(exc, ExceptionGroup) and exc.message == "pool"

    classifier = Classifier(rules=[(QuotaError, T), (pool, A)])
    assert [T, U] == [
        classifier(_group(QuotaError(), ConnectionError())),  # the rule makes them agree
        classifier(_group(QuotaError(), ValueError())),
    ]
    hidden = ValueError("never looked at: the rule decided for its subgroup")
    subgroup = ExceptionGroup("pool", [hidden])
    outer = _group(subgroup, _StatusCode(401))
    seen.clear()
    assert A == classifier(outer)
    assert [outer, subgroup] == seen[:2]
    assert hidden not in seen


def test_a_classifier_rule_error_in_a_leaf_propagates_unchanged() -> None:
    """A rule that raises on a leaf propagates its own exception, as on a lone exception."""
    boom = LookupError("rule bug")

    def broken(exc: BaseException) -> bool:
        if isinstance(exc, BaseExceptionGroup):
            return False
        raise boom

    with pytest.raises(LookupError) as caught:
        Classifier(rules=[(broken, T)])(_group(ValueError()))
    assert boom is caught.value
