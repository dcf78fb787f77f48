"""
Real exceptions, built by the real client libraries, for the classification tests.

The openai and anthropic errors are raised by the SDKs themselves: a real client with
``max_retries=0`` sends its request to an in-process ``MockTransport`` (httpx's own fake), which
answers with a status, a JSON body, headers, or a server-sent event stream. So the tests see
exactly what a user's ``except`` clause sees, mid-stream errors included. No network, no loop.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

URL = "http://dependency.test/v1/things"


def require(name: str) -> ModuleType:
    """Import a client library; skip when it is missing, but fail under ``CI=true``."""
    if os.environ.get("CI") == "true":
        # CI installs the `test` extra: a missing client library is a broken install, and a
        # skip would let the whole point of these tests silently disappear.
        return importlib.import_module(name)
    return pytest.importorskip(name)


def sdk_http(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK builds its errors on: httpx2 in current releases, httpx before."""
    exceptions = importlib.import_module(f"{sdk.__name__}._exceptions")
    found = getattr(exceptions, "httpx2", None) or getattr(exceptions, "httpx", None)
    assert found is not None, f"{sdk.__name__} uses neither httpx nor httpx2"
    return found


Handler = Callable[[ModuleType], Callable[[Any], Any]]


def respond(status: int, body: object, headers: dict[str, str] | None = None) -> Handler:
    """A server answering every request with *status* and a JSON *body*."""

    def make(http: ModuleType) -> Callable[[Any], Any]:
        return lambda request: http.Response(status, json=body, headers=headers)

    return make


def stream(*events: tuple[str | None, object]) -> Handler:
    """A server answering 200 and a server-sent event stream of ``(event, data)`` pairs."""
    lines = []
    for event, data in events:
        if event is not None:
            lines.append(f"event: {event}")
        lines.append(f"data: {json.dumps(data)}")
        lines.append("")
    content = ("\n".join(lines) + "\n").encode()

    def make(http: ModuleType) -> Callable[[Any], Any]:
        return lambda request: http.Response(
            200, headers={"content-type": "text/event-stream"}, content=content
        )

    return make


def fail(error: str) -> Handler:
    """A transport that raises the HTTP library's *error* (``ConnectError``, ``ReadTimeout``)."""

    def make(http: ModuleType) -> Callable[[Any], Any]:
        def handler(request: Any) -> Any:
            raise getattr(http, error)("from the transport", request=request)

        return handler

    return make


def sdk_error(sdk_name: str, handler: Handler, *, streaming: bool = False) -> Exception:
    """The exception the *sdk_name* SDK raises for one call against *handler*'s server."""
    sdk = require(sdk_name)
    http = sdk_http(sdk)
    messages = [{"role": "user", "content": "hi"}]
    with http.Client(transport=http.MockTransport(handler(http))) as http_client:
        try:
            if sdk_name == "openai":
                client = sdk.OpenAI(
                    api_key="test", base_url=URL, max_retries=0, http_client=http_client
                )
                result = client.chat.completions.create(
                    model="test-model", messages=messages, stream=streaming
                )
            else:
                client = sdk.Anthropic(
                    api_key="test", base_url=URL, max_retries=0, http_client=http_client
                )
                result = client.messages.create(
                    model="test-model", max_tokens=8, messages=messages, stream=streaming
                )
            if streaming:
                for _ in result:
                    pass
        except Exception as exc:
            return exc
    raise AssertionError(f"the {sdk_name} SDK raised nothing")


def anthropic_message_start() -> tuple[str, object]:
    """The first event of an anthropic message stream (the 200 is sent before it)."""
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "test-model",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 0},
            },
        },
    )


def anthropic_body(error_type: str) -> dict[str, object]:
    """anthropic's error body: ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    return {"type": "error", "error": {"type": error_type, "message": error_type}}


def openai_body(error_type: str, code: str | None = None) -> dict[str, object]:
    """openai's error body: ``{"error": {"message", "type", "code"}}``."""
    return {"error": {"message": error_type, "type": error_type, "code": code}}


def httpx_status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    """``httpx.HTTPStatusError`` as ``response.raise_for_status()`` builds it."""
    httpx = require("httpx")
    request = httpx.Request("GET", URL)
    response = httpx.Response(status, request=request, headers=headers)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError(f"raise_for_status() accepted {status}")


def aiohttp_response_error(
    status: int, headers: dict[str, str] | None = None, cls: str = "ClientResponseError"
) -> Exception:
    """``aiohttp.ClientResponseError`` as ``ClientResponse.raise_for_status()`` builds it."""
    aiohttp = require("aiohttp")
    multidict = require("multidict")
    yarl = require("yarl")
    info = aiohttp.RequestInfo(
        yarl.URL(URL), "GET", multidict.CIMultiDictProxy(multidict.CIMultiDict())
    )
    response_headers = (
        None if headers is None else multidict.CIMultiDictProxy(multidict.CIMultiDict(headers))
    )
    error: Exception = getattr(aiohttp, cls)(
        info, (), status=status, message="reason", headers=response_headers
    )
    return error


def aiohttp_connector_error(os_error: OSError, cls: str = "ClientConnectorError") -> Exception:
    """``aiohttp.ClientConnectorError`` (an ``OSError`` too) as the TCP connector raises it."""
    aiohttp = require("aiohttp")
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("dependency.test", 443, True, True, None, None, None)
    error: Exception = getattr(aiohttp, cls)(key, os_error)
    return error
