"""
The dashboard in a real browser: Debian's headless chromium, driven by selenium, against the
example app under a real uvicorn server. Locally it skips when chromium, chromedriver or
selenium is missing (saying how to install them); in CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from .conftest import LiveServer

CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "the dashboard browser test needs Debian's chromium and chromedriver and selenium: "
    "apt-get install chromium chromium-driver; pip install 'ringfence[test]'"
)
#: Seconds the page gets to show a change (it polls every second and listens to /events).
SHOWS_WITHIN = 5.0
#: Seconds the page gets to open /events again once a slot is free (it tries again 2-4 s after
#: a first refusal).
RETRIES_WITHIN = 15.0


def unavailable(why: str) -> NoReturn:
    """Skip, or fail in CI, where the test must run."""
    message = f"{INSTALL} ({why})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(live: LiveServer, tmp_path: Path) -> Iterator[Any]:
    """Headless chromium with a fresh profile; quit before the server stops."""
    with _browser(tmp_path) as driver:
        yield driver


@contextmanager
def _browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed")
    binary = shutil.which("chromium")
    if binary is None:
        unavailable("no chromium on PATH")
    if not os.access(CHROMEDRIVER, os.X_OK):
        unavailable(f"no {CHROMEDRIVER}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def _served(web: Any, tmp_path: Path) -> Iterator[tuple[str, httpx.Client, Any]]:
    """*web* on a live uvicorn server, with a client of it and a browser (quit before the
    server stops): (the server's base URL, the client, the browser)."""
    server = LiveServer(web)
    server.start()
    try:
        with (
            httpx.Client(base_url=server.base, timeout=10.0) as client,
            _browser(tmp_path) as browser,
        ):
            yield server.base, client, browser
    finally:
        server.stop()


def card_state(driver: Any, name: str) -> tuple[str | None, str]:
    """(data-state, the state text shown) of *name*'s card; (None, '') when absent."""
    from selenium.webdriver.common.by import By

    cards = driver.find_elements(By.CSS_SELECTOR, f'article.card[data-dependency="{name}"]')
    if not cards:
        return None, ""
    return cards[0].get_attribute("data-state"), cards[0].find_element(By.CLASS_NAME, "state").text


def wait_for(driver: Any, what: str, predicate: Any, within: float = SHOWS_WITHIN) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, within, poll_frequency=0.05).until(
        lambda d: predicate(d), message=f"the dashboard did not show {what}"
    )


def test_dashboard_shows_a_forced_open_breaker(
    live: LiveServer, browser: Any, tmp_path: Path
) -> None:
    """Isolating llm and breaking search through the app shows both on the page within seconds."""
    with httpx.Client(base_url=live.base, timeout=10.0) as client:
        for index in range(20):  # some traffic, so the figures are not all zero
            assert 200 == client.get(f"/db/key{index}").status_code
            assert 200 == client.get("/ask", params={"q": f"question {index}"}).status_code
        browser.get(live.base + "/ringfence/")
        wait_for(
            browser,
            "three closed dependencies",
            lambda d: [card_state(d, n)[0] for n in ("llm", "search", "db")] == ["closed"] * 3,
        )
        assert ("closed", "CLOSED") == card_state(browser, "llm")

        assert {"dependency": "llm", "state": "isolated"} == client.post(
            "/admin/isolate/llm"
        ).json()
        wait_for(browser, "llm isolated", lambda d: card_state(d, "llm")[0] == "isolated")
        assert ("isolated", "ISOLATED") == card_state(browser, "llm")

        client.post("/admin/outage/search", params={"on": "true"})
        assert [502, 502, 502, 503] == [client.get("/search").status_code for _ in range(4)]
        wait_for(browser, "search open", lambda d: card_state(d, "search")[0] == "open")
        # saved before the remaining checks, so a failing run leaves one to look at
        screenshot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(screenshot))
        print(f"dashboard screenshot: {screenshot}")
        assert screenshot.read_bytes().startswith(b"\x89PNG")
        assert ("open", "OPEN") == card_state(browser, "search")
        assert ("closed", "CLOSED") == card_state(browser, "db")

        from selenium.webdriver.common.by import By

        health = browser.find_element(By.ID, "health").text
        # the verdict in capitals, the names as they are spelled
        verdict, down = health.split(" · down: ")
        assert ("UNHEALTHY", {"llm", "search"}) == (verdict, set(down.split(", ")))
        countdown = browser.find_element(
            By.CSS_SELECTOR, 'article[data-dependency="search"] .countdown'
        ).text
        assert re.fullmatch(r"probe in \d+\.\d s · open for \d+\.\d s", countdown), countdown


def test_dashboard_retries_events_after_a_503(tmp_path: Path) -> None:
    """
    With /events full the page's stream is refused (503, which EventSource never retries on
    its own): the page says so, tries again later, and is live once a slot frees.
    """
    from selenium.webdriver.common.by import By
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    from supervisor import Supervisor
    from supervisor.integrations.asgi import app as ringfence_app
    from supervisor.integrations.asgi import lifespan

    supervisor = Supervisor()
    supervisor.register("db", lambda key: key)

    async def isolate(request: Request) -> Response:
        await supervisor.isolate(request.path_params["name"])
        return JSONResponse({"state": "isolated"})

    web = Starlette(
        lifespan=lifespan(supervisor),
        routes=[
            Route("/admin/isolate/{name}", isolate, methods=["POST"]),
            Mount("/ringfence", ringfence_app(supervisor, max_event_clients=1)),
        ],
    )
    web.state.supervisor = supervisor
    with _served(web, tmp_path) as (base, client, browser):
        with client.stream("GET", "/ringfence/events") as holder:  # the only slot
            assert 200 == holder.status_code
            browser.get(base + "/ringfence/")
            wait_for(browser, "db's card", lambda d: card_state(d, "db")[0] == "closed")
            wait_for(
                browser,
                "the refused events stream",
                lambda d: "retrying" in d.find_element(By.ID, "conn").text,
            )
        # the slot frees once the server has seen the holder go; the page tries again
        wait_for(
            browser,
            "the events stream live again",
            lambda d: d.find_element(By.ID, "conn").text == "live",
            within=RETRIES_WITHIN,
        )
        assert 200 == client.post("/admin/isolate/db").status_code
        wait_for(
            browser,
            "the transition in the events log",
            lambda d: "closed → isolated" in d.find_element(By.ID, "log").text,
        )


def test_dashboard_shows_http_status_window_and_every_event(tmp_path: Path) -> None:
    """A retry's line names its HTTP status; the failure rate names its window; 60 events stay."""
    from selenium.webdriver.common.by import By
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    from policies import Retry, backoff
    from supervisor import Supervisor
    from supervisor.integrations.asgi import app as ringfence_app
    from supervisor.integrations.asgi import lifespan

    class Unavailable(Exception):
        status_code = 503

    failures = [Unavailable()]

    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    supervisor = Supervisor()
    supervisor.register("api", flaky, retry=Retry(attempts=2, backoff=backoff.constant(0.0)))

    async def call(request: Request) -> Response:
        return JSONResponse({"answer": await supervisor.call("api")})

    async def cycle(request: Request) -> Response:
        for _ in range(30):  # 60 transitions
            await supervisor.isolate("api")
            await supervisor.reset("api")
        return JSONResponse({})

    web = Starlette(
        lifespan=lifespan(supervisor),
        routes=[
            Route("/call", call),
            Route("/cycle", cycle, methods=["POST"]),
            Mount("/ringfence", ringfence_app(supervisor)),
        ],
    )
    with _served(web, tmp_path) as (base, client, browser):
        browser.get(base + "/ringfence/")
        wait_for(browser, "live", lambda d: d.find_element(By.ID, "conn").text == "live")
        assert {"answer": "ok"} == client.get("/call").json()
        wait_for(
            browser,
            "the retry with its status",
            lambda d: "after Unavailable (HTTP 503)" in d.find_element(By.ID, "log").text,
        )
        wait_for(
            browser,
            "the failure rate's window",
            lambda d: (
                client.get("/call").status_code == 200  # traffic while the page polls
                and "failure rate (last 5 s)"
                in d.find_element(By.CSS_SELECTOR, 'article[data-dependency="api"]').text.lower()
            ),
        )
        assert 200 == client.post("/cycle").status_code
        wait_for(
            browser,
            "every event kept",
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log li")) >= 61,
        )


def test_dashboard_shows_refusals_by_priority(tmp_path: Path) -> None:
    """A sheddable call refused by a full bulkhead shows on the card's totals line (issue 20)."""
    import threading

    import anyio
    from selenium.webdriver.common.by import By
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route

    from policies import Bulkhead, Priority
    from supervisor import BulkheadFull, Supervisor
    from supervisor.integrations.asgi import app as ringfence_app
    from supervisor.integrations.asgi import lifespan

    release = anyio.Event()
    held = threading.Event()

    async def slow() -> str:
        held.set()
        await release.wait()
        return "ok"

    supervisor = Supervisor()
    supervisor.register("api", slow, bulkhead=Bulkhead(max_concurrent=1, max_queued=0))

    async def hold(request: Request) -> Response:
        return JSONResponse({"answer": await supervisor.call("api")})

    async def shed(request: Request) -> Response:
        with supervisor.priority(Priority.SHEDDABLE):
            try:
                await supervisor.call("api")
            except BulkheadFull:
                return JSONResponse({"refused": True}, status_code=503)
        return JSONResponse({"refused": False})

    async def let_go(request: Request) -> Response:
        release.set()
        return JSONResponse({})

    web = Starlette(
        lifespan=lifespan(supervisor),
        routes=[
            Route("/hold", hold),
            Route("/shed", shed),
            Route("/release", let_go, methods=["POST"]),
            Mount("/ringfence", ringfence_app(supervisor)),
        ],
    )
    holder = None
    try:
        with _served(web, tmp_path) as (base, client, browser):
            browser.get(base + "/ringfence/")
            wait_for(browser, "live", lambda d: d.find_element(By.ID, "conn").text == "live")
            holder = threading.Thread(target=client.get, args=("/hold",))
            holder.start()
            assert held.wait(10.0), "the holding call never reached the dependency"
            assert 503 == client.get("/shed").status_code
            wait_for(
                browser,
                "the refusal by priority",
                lambda d: (
                    "refused by priority: sheddable 1"
                    in d.find_element(By.CSS_SELECTOR, 'article[data-dependency="api"]').text
                ),
            )
            assert 200 == client.post("/release").status_code
            holder.join(10.0)
    finally:
        if holder is not None:
            holder.join(10.0)
