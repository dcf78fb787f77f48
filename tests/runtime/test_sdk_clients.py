"""
The real openai and anthropic *async* SDK clients, registered with the supervisor as they are
(``sup.register("llm", client.chat.completions.create)``), against a loopback fake API (issue
#9: every async callable is recognised).

Their ``create`` methods are plain ``def`` wrappers (``required_args``, ``functools.wraps``)
over an ``async def``, so ``inspect.iscoroutinefunction`` says False: these tests prove the
supervisor still awaits them on the loop, and that the SDKs' own exceptions (``max_retries=0``,
so ringfence's policies are the only retries) drive retry, breaker, fallback and pause.

The fake API is a small Starlette app under a real uvicorn on ``127.0.0.1`` and a free port,
in a thread with its own loop (tests/integrations/conftest.py's habit), answering each request
with the next scripted answer: the JSON each SDK parses, or an error status with the error body
and headers the real API sends. The SDKs talk to it through their own transport: openai 3.x
and anthropic 2.x send with ``httpx2`` (``httpcore2``, whose ``AutoBackend`` picks asyncio or
trio via sniffio), older releases with ``httpx``; both work on trio as well as asyncio.

Both backends, but trio runs on its **real** clock here, not the autojumping ``MockClock``
the other runtime tests use: every request waits on a socket served by another thread, and
while it does, all tasks look blocked, so autojump would leap virtual time to the next
deadline (the SDK's request timeout, or the hang guard) and fail the call; openai also looks
its platform up in a worker thread on the first request. ``MockClock``'s docstring warns
about in-flight I/O for this reason. Hence the Retry-After answers here are short and real
(``retry-after-ms: 200``) on both backends, and the calls themselves are what wait for them.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anthropic
import anyio
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from policies import Breaker, ErrorKind, Retry, backoff, classify
from supervisor import DependencyPaused, DependencyStatus, Supervisor
from supervisor._actor import SYNC_THREADS

from .conftest import guard

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Both backends, trio on its real clock (real sockets: see the module docstring)."""
    return request.param


# ---------------------------------------------------------------------------- the fake API

#: The error ``type`` each API puts in its error body, by status (the APIs' documented types).
OPENAI_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",  # with code "invalid_api_key", as openai answers it
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
ANTHROPIC_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status (200 is the SDK's parsed object) and extra headers."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


def openai_body(status: int) -> dict[str, Any]:
    if status == 200:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    kind = OPENAI_ERROR_TYPES.get(status, "server_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": f"status {status}", "type": kind, "param": None, "code": code}}


def anthropic_body(status: int) -> dict[str, Any]:
    if status == 200:
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": f"status {status}"}}


class FakeAPI:
    """
    Both APIs' endpoints, playing ``script`` (200 when it runs out) and recording the paths
    asked. While ``hold()`` is on, every request waits, on the server's loop, for
    ``release()`` from the test's thread.
    """

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._holding = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._endpoint(openai_body), methods=["POST"]),
                Route("/v1/messages", self._endpoint(anthropic_body), methods=["POST"]),
            ]
        )

    def reset(self, *answers: Answer) -> None:
        self.release()
        self.script = deque(answers)
        self.requests = []

    def play(self, *statuses: int | Answer) -> None:
        self.script.extend(s if isinstance(s, Answer) else Answer(s) for s in statuses)

    def hold(self) -> None:
        with self._lock:
            self._holding = True

    def release(self) -> None:
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
        for loop, event in held:
            loop.call_soon_threadsafe(event.set)

    def _endpoint(self, body: Callable[[int], dict[str, Any]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            await request.json()  # the SDK sent a JSON body
            self.requests.append(request.url.path)
            event = asyncio.Event()
            with self._lock:
                if self._holding:
                    self._held.append((asyncio.get_running_loop(), event))
                else:
                    event.set()
            await event.wait()
            answer = self.script.popleft() if self.script else Answer()
            return JSONResponse(body(answer.status), answer.status, headers=dict(answer.headers))

        return endpoint


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeAPI, str]]:
    """The fake API under a real uvicorn on a free loopback port, and its base URL."""
    import uvicorn

    api = FakeAPI()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn starts: a client that connects first waits in the backlog
    # until uvicorn accepts, so nobody has to poll for readiness.
    sock.listen(128)
    config = uvicorn.Config(
        api.app, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        api.release()
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture
def api(served: tuple[FakeAPI, str]) -> Iterator[FakeAPI]:
    """The fake API with an empty script; nothing is left held after the test."""
    served[0].reset()
    yield served[0]
    served[0].release()


# ---------------------------------------------------------------------------- the two SDKs


@dataclass(frozen=True)
class Sdk:
    """How a test builds one SDK's async client, names its method and shapes a request."""

    name: str
    module: ModuleType
    parsed: type  # what a 200 parses into
    client: Callable[[str], Any]  # base URL -> client
    method: Callable[[Any], Callable[..., Any]]  # client -> the bound ``create``
    ask: Callable[[Any], Callable[[str], Any]]  # client -> a lambda around ``create``
    request: Mapping[str, Any]


OPENAI = Sdk(
    name="openai",
    module=openai,
    parsed=openai.types.chat.ChatCompletion,
    client=lambda base: openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="test", max_retries=0),
    method=lambda client: client.chat.completions.create,
    ask=lambda client: (
        lambda prompt: client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": prompt}]
        )
    ),
    request={"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]},
)
ANTHROPIC = Sdk(
    name="anthropic",
    module=anthropic,
    parsed=anthropic.types.Message,
    client=lambda base: anthropic.AsyncAnthropic(base_url=base, api_key="test", max_retries=0),
    method=lambda client: client.messages.create,
    ask=lambda client: (
        lambda prompt: client.messages.create(
            model="claude-test", max_tokens=16, messages=[{"role": "user", "content": prompt}]
        )
    ),
    request={
        "model": "claude-test",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}],
    },
)


@pytest.fixture(params=[OPENAI, ANTHROPIC], ids=lambda sdk: sdk.name)
def sdk(request: pytest.FixtureRequest) -> Sdk:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def base(served: tuple[FakeAPI, str]) -> str:
    return served[1]


def cached(error: Exception, *args: object, **kwargs: object) -> str:
    """A fallback for any SDK method's parameters."""
    return f"cached ({type(error).__name__})"


async def held_batch(
    sup: Supervisor, api: FakeAPI, name: str, n: int, *args: object, **kwargs: object
) -> tuple[DependencyStatus, list[object]]:
    """
    Start *n* calls while the API holds every request; once all tasks are blocked, snapshot
    the dependency's status, then release the API and collect the results.
    """
    results: list[object] = []

    async def one() -> None:
        results.append(await sup.call(name, *args, **kwargs))

    api.hold()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            status = sup.status(name)
            api.release()  # before the task group waits for the calls to end
    finally:
        api.release()
    return status, results


# ---------------------------------------------------------------------------- awaited on the loop


async def test_the_sdk_method_is_awaited_on_the_loop_not_in_a_worker_thread(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk
) -> None:
    """A sync callable gets at most SYNC_THREADS threads and queues the rest; the SDK's
    method (a plain def, for inspect) has all SYNC_THREADS + 1 calls in flight at once, none
    queued, and each returns the SDK's parsed object, not a coroutine."""
    n = SYNC_THREADS + 1
    with guard():
        async with sdk.client(base) as client, sup:
            method = sdk.method(client)
            assert not inspect.iscoroutinefunction(method)  # the case this test is about
            sup.register("llm", method)
            status, results = await held_batch(sup, api, "llm", n, **sdk.request)
    assert (n, 0) == (status.in_flight, status.queued)
    assert n == len(api.requests)
    assert [sdk.parsed] * n == [type(result) for result in results]


async def test_a_lambda_around_the_sdk_is_awaited_on_the_loop(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk
) -> None:
    """`lambda prompt: client...create(...)` returns a coroutine: the supervisor awaits it
    (the parsed object comes back) and calls the lambda on the loop from then on (all of
    SYNC_THREADS + 1 calls in flight, none waiting for a thread)."""
    n = SYNC_THREADS + 1
    with guard():
        async with sdk.client(base) as client, sup:
            sup.register("l", sdk.ask(client))
            first = await sup.call("l", "hello")
            status, results = await held_batch(sup, api, "l", n, "again")
    assert isinstance(first, sdk.parsed)
    assert (n, 0) == (status.in_flight, status.queued)
    assert [sdk.parsed] * n == [type(result) for result in results]
    assert 1 + n == len(api.requests)


# ---------------------------------------------------------------------------- errors drive policies


@pytest.mark.parametrize(
    ("sdk", "status"),
    [(OPENAI, 500), (OPENAI, 503), (ANTHROPIC, 500), (ANTHROPIC, 529)],
    ids=["openai-500", "openai-503", "anthropic-500", "anthropic-529-overloaded"],
)
async def test_a_server_error_is_transient_retried_once_and_counted(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk, status: int
) -> None:
    """With the SDK's own retries off, ringfence retries the 5xx (anthropic's 529
    overloaded_error included): the server sees exactly two requests and the breaker one
    failure."""
    api.play(status, 200)
    with guard():
        async with sdk.client(base) as client, sup:
            sup.register(
                "llm",
                sdk.method(client),
                retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
                breaker=Breaker(failure_threshold=5),
            )
            result = await sup.call("llm", **sdk.request)
            after = sup.status("llm")
    assert isinstance(result, sdk.parsed)
    assert 2 == len(api.requests)
    assert (2, 1, 1) == (after.calls, after.failures, after.retries)
    [(error, count)] = after.errors.items()  # the SDK's own class, e.g. OverloadedError
    assert 1 == count
    assert issubclass(getattr(sdk.module, error), sdk.module.InternalServerError)


@pytest.mark.parametrize("status", [400, 401])
async def test_a_callers_or_operators_mistake_is_not_retried_counted_or_masked(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk, status: int
) -> None:
    """A 400 or 401 reaches the caller as the SDK's own error after one request: no retry,
    no breaker failure, no fallback; 500s right after are retried, counted and answered."""
    api.play(status)
    error = {400: sdk.module.BadRequestError, 401: sdk.module.AuthenticationError}[status]
    with guard():
        async with sdk.client(base) as client, sup:
            sup.register(
                "llm",
                sdk.method(client),
                retry=Retry(attempts=3, backoff=backoff.constant(0.0)),
                breaker=Breaker(failure_threshold=5),
                fallback=cached,
            )
            with pytest.raises(error) as info:
                await sup.call("llm", **sdk.request)
            mistake = sup.status("llm")
            assert 1 == len(api.requests)
            api.play(500, 500, 500)
            answered = await sup.call("llm", **sdk.request)
            after = sup.status("llm")
    assert status == info.value.status_code
    assert ("closed", 1, 0, 0, 0) == (
        mistake.state,
        mistake.calls,
        mistake.failures,
        mistake.retries,
        mistake.fallbacks,
    )
    assert "cached (InternalServerError)" == answered  # retried, counted, then answered
    assert 4 == len(api.requests)
    assert (4, 3, 2, 1) == (after.calls, after.failures, after.retries, after.fallbacks)


async def test_a_429_with_retry_after_pauses_the_dependency(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk
) -> None:
    """The SDK's RateLimitError carries the response: its `retry-after-ms` pauses the
    dependency (paused_until set, an event, no breaker failure); the next call waits for the
    pause, without reaching the server meanwhile, and gets the parsed answer."""
    api.play(Answer(429, {"retry-after-ms": "200", "retry-after": "30"}))
    events = sup.events(kinds=[DependencyPaused])
    with guard():
        async with sdk.client(base) as client, sup:
            sup.register("llm", sdk.method(client), retry=Retry(attempts=1), breaker=Breaker())
            with pytest.raises(sdk.module.RateLimitError):
                await sup.call("llm", **sdk.request)
            paused = sup.status("llm")
            assert 1 == len(api.requests)
            result = await sup.call("llm", **sdk.request)  # waits out the pause
            after = sup.status("llm")
    assert paused.paused_until is not None
    assert 0.0 < paused.pause_remaining <= 0.2  # retry-after-ms wins over retry-after
    assert (0, "closed") == (paused.failures, paused.state)
    assert isinstance(result, sdk.parsed)
    assert 2 == len(api.requests)
    assert after.paused_until is None
    got = [event async for event in events]
    assert [("llm", 0.2)] == [(e.dependency, e.retry_after) for e in got]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- the kinds observed

#: status -> (the SDK exception class it must be an instance of, its kind). Both SDKs raise
#: subclasses of these (anthropic 2.x: OverloadedError for 529, ServiceUnavailableError for
#: 503, both InternalServerError).
EXPECTED_KINDS: Mapping[int, tuple[str, ErrorKind]] = {
    400: ("BadRequestError", ErrorKind.INVALID_INPUT),
    401: ("AuthenticationError", ErrorKind.AUTH),
    403: ("PermissionDeniedError", ErrorKind.AUTH),
    404: ("NotFoundError", ErrorKind.INVALID_INPUT),
    409: ("ConflictError", ErrorKind.INVALID_INPUT),
    422: ("UnprocessableEntityError", ErrorKind.INVALID_INPUT),
    500: ("InternalServerError", ErrorKind.TRANSIENT),
    503: ("InternalServerError", ErrorKind.TRANSIENT),
    529: ("InternalServerError", ErrorKind.TRANSIENT),
    429: ("RateLimitError", ErrorKind.RATE_LIMITED),  # last: a pause would hold the rest up
}


async def test_the_supervisor_classifies_the_sdks_own_exceptions(
    sup: Supervisor, api: FakeAPI, base: str, sdk: Sdk
) -> None:
    """Each error status reaches the classifier as the SDK's own exception, unwrapped, and
    classify() gives the kind the README's table promises."""
    seen: list[tuple[int, BaseException, ErrorKind]] = []

    def recording(exc: BaseException) -> ErrorKind:
        kind = classify(exc)
        seen.append((getattr(exc, "status_code", 0), exc, kind))
        return kind

    statuses = list(EXPECTED_KINDS)
    api.play(*statuses)
    with guard():
        async with sdk.client(base) as client, sup:
            sup.register("llm", sdk.method(client), classifier=recording)
            for status in statuses:
                with pytest.raises(sdk.module.APIStatusError) as info:
                    await sup.call("llm", **sdk.request)
                assert status == info.value.status_code
    assert statuses == [status for status, _, _ in seen]
    for status, exc, kind in seen:
        name, expected = EXPECTED_KINDS[status]
        assert isinstance(exc, getattr(sdk.module, name)), (status, type(exc).__name__)
        assert (status, expected) == (status, kind)
