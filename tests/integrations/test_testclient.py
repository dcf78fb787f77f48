"""
A module-level supervisor with ``@supervisor.protect`` under FastAPI's ``TestClient`` in two
tests (issue 21): the lifespan enters the supervisor per test, and a supervisor left is
entered again with fresh actors. Each test runs on asyncio and on trio (TestClient's
``backend``), under ``supervisor.testing.fast()`` so the retry waits nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from policies import Breaker, Retry, backoff
from supervisor import Supervisor, testing
from supervisor.integrations.asgi import lifespan

supervisor = Supervisor()
calls: list[str] = []


class Upstream:
    """A client class whose method is protected: one dependency for every instance."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first

    @supervisor.protect(
        "upstream",
        retry=Retry(attempts=3, backoff=backoff.constant(30.0)),
        breaker=Breaker(failure_ratio=0.5, min_throughput=10, sampling=60.0),
    )
    async def get(self, path: str) -> str:
        calls.append(path)
        if len(calls) <= self.fail_first:
            raise ConnectionError("upstream down")
        return f"got {path}"


api = FastAPI(lifespan=lifespan(supervisor))


@api.get("/items/{item}")
async def item(item: str) -> dict[str, object]:
    answer = await Upstream(fail_first=2).get(f"/{item}")
    return {"answer": answer, "calls": supervisor.status("upstream").calls}


@pytest.fixture(params=["asyncio", "trio"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    calls.clear()
    with testing.fast(), TestClient(api, backend=request.param) as test_client:
        yield test_client


def test_first_test_enters_the_module_supervisor(client: TestClient) -> None:
    """Two failures, then the answer: retried at once (30 s backoffs, under fast())."""
    response = client.get("/items/a")
    assert (200, {"answer": "got /a", "calls": 3}) == (response.status_code, response.json())


def test_second_test_enters_it_again_with_fresh_counters(client: TestClient) -> None:
    """The same module-level supervisor, entered again: counts start from zero again."""
    response = client.get("/items/b")
    assert (200, {"answer": "got /b", "calls": 3}) == (response.status_code, response.json())
    assert "closed" == supervisor.status("upstream").state
