"""
What a new user trips on first (issue 21, "Small things"): the version, a plain-text --help
with every default, a silent library logger, retry_after without a clock, the package metadata.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import supervisor
from policies import retry_after
from supervisor.__main__ import _parser, main

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`ringfence --version` says supervisor.__version__, which the wheel's metadata takes."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert 0 == exited.value.code
    assert f"ringfence {supervisor.__version__}\n" == capsys.readouterr().out
    assert ["version"] == PYPROJECT["project"]["dynamic"]
    assert "supervisor/__init__.py" == PYPROJECT["tool"]["hatch"]["version"]["path"]
    # the installed distribution (an editable install of a tree of this project)
    assert supervisor.__version__ == importlib.metadata.version("ringfence")


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_subparsers(sub))
    return found


def test_help_is_plain_text_and_gives_every_default() -> None:
    """No reStructuredText in any --help; every option says its default."""
    for parser in _subparsers(_parser()):
        text = parser.format_help()
        assert "``" not in text, parser.prog
        for action in parser._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS:
                continue
            assert action.help, f"{parser.prog} {action.option_strings} has no help"
            help_text = parser._get_formatter()._expand_help(action)
            assert "default" in help_text, f"{parser.prog} {action.option_strings}"


def test_demo_without_its_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ringfence demo` without rich: a usage error naming ringfence[demo], not a traceback."""
    monkeypatch.setitem(sys.modules, "rich.console", None)
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--duration", "1", "--no-live"])
    assert 2 == exited.value.code
    assert "pip install 'ringfence[demo]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("configure", "printed"),
    [("", False), ("logging.basicConfig(level=logging.WARNING)", True)],
)
def test_the_library_logger_is_silent_until_logging_is_configured(
    configure: str, printed: bool
) -> None:
    """A NullHandler on "ringfence": its warnings reach stderr only if the app configures it."""
    code = (
        "import logging, supervisor\n"
        f"{configure}\n"
        "logging.getLogger('ringfence').warning('ringfence.breaker_opened')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert printed == ("ringfence.breaker_opened" in done.stderr)


class _Answer(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        # an HTTP date: measured from the answer's own Date (the server's clock)
        (
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            30.0,
        ),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, None),  # no clock to measure it by
    ],
)
def test_retry_after_needs_no_now(headers: dict[str, str], seconds: float | None) -> None:
    """retry_after(exc) without `now`; policies still read no clock."""
    assert seconds == retry_after(_Answer(headers))


def test_an_explicit_now_still_wins() -> None:
    headers = {
        "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
        "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    assert 20.0 == retry_after(_Answer(headers), now=1445412490.0)  # 07:28:10


def test_package_metadata() -> None:
    """What it is about and who it is for, in pyproject.toml (no [project.urls] yet: the
    project has no public home to point at)."""
    project = PYPROJECT["project"]
    assert {"circuit-breaker", "retry", "asyncio", "trio"} <= set(project["keywords"])
    classifiers = set(project["classifiers"])
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Intended Audience :: Developers",
    } <= classifiers


def test_make_demo_installs_only_the_demo_extra(tmp_path: Path) -> None:
    """`make demo` installs '.[demo]' (not the test toolchain); `make test` installs both."""
    venv = tmp_path / "venv"  # absent: make plans the venv's creation too
    demo = subprocess.run(
        ["make", "-n", "demo", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    test = subprocess.run(
        ["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install --quiet -e '.[demo]'" in demo
    assert "[test" not in demo
    assert "pip install --quiet -e '.[test,demo]'" in test
