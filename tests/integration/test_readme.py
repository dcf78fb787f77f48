"""The README's examples run (Polly compiles its snippets; stamina runs doctests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
MARKER = re.compile(
    r'<!-- readme-test: run, expect "(?P<expect>[^"]*)" -->\n```python\n(?P<code>.*?)\n```',
    re.DOTALL,
)


def blocks() -> list[tuple[str, str]]:
    found = [
        (m["code"], m["expect"].replace("\\n", "\n")) for m in MARKER.finditer(README.read_text())
    ]
    assert found, "the README lost its tested quickstart"
    return found


@pytest.mark.parametrize(("code", "expected"), blocks())
def test_readme_example_runs_and_prints_what_it_says(code: str, expected: str) -> None:
    """Each marked README block runs in a fresh interpreter and prints the expected text."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert 0 == result.returncode, result.stderr
    assert expected == result.stdout.strip()


def test_quickstart_is_short() -> None:
    """The quickstart stays a quickstart: at most 30 lines of code."""
    code, _ = blocks()[0]
    assert len(code.splitlines()) <= 30


def test_readme_gives_the_two_commands_first() -> None:
    """The first code block of the README is `make demo` and `make test`."""
    first = README.read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    assert ["make demo", "make test"] == [
        line.split("#")[0].strip() for line in first.strip().splitlines()
    ]


def test_readme_runs_the_integration_and_decorator_examples() -> None:
    """Issue 21: the collector, instrument(), the ASGI routes and error handlers, and
    @protect on a method are each in a block the README test runs."""
    codes = [code for code, _ in blocks()]
    for needle in (
        "supervisor.integrations.prometheus import collector",
        "supervisor.integrations.otel import instrument",
        "install_error_handlers(api)",
        '"/ringfence/status/search"',
        "@supervisor.protect(retry=",
    ):
        assert any(needle in code for code in codes), needle


def test_readme_says_how_to_install_from_a_checkout_or_a_wheel() -> None:
    """The install commands a new user needs, since the distribution is not on PyPI."""
    text = README.read_text()
    install = text.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    for command in (
        "python3 -m venv .venv",
        "pip install .",
        "pip wheel --no-deps -w dist .",
        "python -m build",
        "pip install ./dist/ringfence-*.whl",
        "'.[demo]'",
    ):
        assert command in install, command
    assert "supervisord" in install  # the note on unrelated packages of the same import names
