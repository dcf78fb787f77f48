"""The asyncio fast path is generated from its template and the @inline handlers (issue 17)."""

from __future__ import annotations

import pytest

from supervisor._backends import _generate


def test_the_generated_fast_path_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    """`make generate` was run after the last edit of the template or an @inline handler."""
    assert _generate.main(["--test"]) == 0, capsys.readouterr().err
