"""
The fast paths are generated from their templates and the @inline handlers (issue 17):
asyncio's fast path, and trio's attempt (issue 18: its handler frames were the gap to a bare
cancel scope).
"""

from __future__ import annotations

import pytest

from supervisor._backends import (
    _asyncio,
    _generate,
    _generated_asyncio,
    _generated_trio,
    _trio,
    paths_for,
)


def test_the_generated_fast_paths_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    """`make generate` was run after the last edit of a template or an @inline handler."""
    assert _generate.main(["--test"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("backend", "generated", "template"),
    [("asyncio", _generated_asyncio, _asyncio), ("trio", _generated_trio, _trio)],
)
def test_each_backend_runs_its_generated_attempt_and_its_template_when_told(
    backend: str, generated: object, template: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RINGFENCE_INLINE", raising=False)
    assert paths_for(backend) is generated.PATHS  # type: ignore[attr-defined]
    monkeypatch.setenv("RINGFENCE_INLINE", "0")
    assert paths_for(backend) is template.PATHS  # type: ignore[attr-defined]
