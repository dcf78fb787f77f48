"""
``ringfence demo --web``: the dashboard served beside the demo, on the supervisor's own loop.

The demo runs as a real process; the test reads the dashboard's URL from its first line of
output (printed once the server answers) and talks to it with httpx while the demo runs.
Real time is unavoidable (a real demo); nothing here asserts how fast.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.__main__ import main
from supervisor._demo import DemoConfig, run_demo

URL_LINE = re.compile(
    r"dashboard: (http://127\.0\.0\.1:\d+/)"
    r" \(live while the demo runs; Prometheus text at /metrics\)\n"
)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`ringfence demo --web` running (8 s, on a free port); its process and dashboard URL."""
    command = [
        sys.executable,
        "-m",
        "supervisor",
        "demo",
        "--web",
        "--web-port",
        "0",
        "--no-live",
        "--duration",
        "8",
        "--clients",
        "4",
        "--seed",
        "3",
        "--plot",
        str(tmp_path / "timeline.png"),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the demo prints it (or exits)
        match = URL_LINE.fullmatch(first)
        if match is None:
            process.kill()
            _, errors = process.communicate(timeout=30)
            pytest.fail(f"no dashboard URL first, got {first!r}; stderr:\n{errors}")
        yield process, match[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_demo_serves_status_events_and_the_page(
    demo: tuple[subprocess.Popen[str], str],
) -> None:
    """While the demo runs, its URL serves /status, /health, /events, the page and /metrics."""
    process, url = demo
    with httpx.Client(base_url=url, timeout=10.0) as client:
        status = client.get("status")
        health = client.get("health")
        page = client.get("")
        metrics = client.get("metrics")
        with client.stream("GET", "events") as events:
            lines = events.iter_lines()
            first_event = next(lines)
            first_data = next(lines)
    output, errors = process.communicate(timeout=120)

    assert 200 == status.status_code
    assert ["llm"] == list(status.json())
    llm = status.json()["llm"]
    assert "llm" == llm["name"]
    assert llm["state"] in {"closed", "open", "half_open"}
    assert health.status_code in {200, 503}
    assert "llm" in health.json()["states"]
    assert 200 == page.status_code
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>ringfence</title>" in page.text
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    families = {family.name: family for family in text_string_to_metric_families(metrics.text)}
    assert {
        "ringfence_calls",
        "ringfence_rejections",
        "ringfence_retries",
        "ringfence_fallbacks",
        "ringfence_breaker_state",
        "ringfence_breaker_transitions",
        "ringfence_in_flight",
        "ringfence_queued",
        "ringfence_call_duration_seconds",
        "ringfence_hedges",
        "ringfence_hedge_wins",
        "ringfence_concurrency_limit",
        "ringfence_requests",
        "ringfence_priority_rejections",
    } == set(families)
    [current] = [
        sample.labels["state"]
        for sample in families["ringfence_breaker_state"].samples
        if sample.value == 1.0 and sample.labels["dependency"] == "llm"
    ]
    assert current in {"closed", "open", "half_open"}
    assert "text/event-stream" in events.headers["content-type"]
    assert "event: snapshot" == first_event
    assert ["llm"] == list(json.loads(first_data.removeprefix("data: ")))
    # the demo itself ran to its end as usual, losing nothing
    assert 0 == process.returncode, errors
    assert "ringfence demo summary" in output


def test_web_with_trio_is_refused_at_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """--web on trio is an argparse error saying it needs asyncio; run_demo refuses it too."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--web", "--backend", "trio"])
    assert 2 == exit_.value.code
    assert "--web needs --backend asyncio" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs the asyncio backend"):
        run_demo(DemoConfig(web=True, backend="trio", live=False))


def test_web_port_without_web_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--web-port alone is an argparse error (it would silently do nothing)."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--web-port", "8000"])
    assert 2 == exit_.value.code
    assert "--web-port needs --web" in capsys.readouterr().err


def test_a_busy_web_port_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A --web-port another server listens on: exit status 2 and a message, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["demo", "--web", "--web-port", str(port), "--no-live", "--duration", "1"])
    assert 2 == code
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in capsys.readouterr().err
