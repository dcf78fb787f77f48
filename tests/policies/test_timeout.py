"""Timeout's stream limits: first_item and between_items (issue 10, item 3)."""

from __future__ import annotations

import datetime
import math
import re
import warnings

import pytest

from policies import Timeout


def test_stream_limits_default_to_none() -> None:
    """Neither stream limit is set by default: streams wait as long as calls do."""
    timeout = Timeout()
    assert (None, None) == (timeout.first_item, timeout.between_items)


def test_stream_limits_are_kept_and_shown() -> None:
    """Both limits are stored as given and appear in the repr."""
    timeout = Timeout(first_item=5.0, between_items=10)
    assert (5.0, 10) == (timeout.first_item, timeout.between_items)
    assert "Timeout(attempt=None, total=None, first_item=5.0, between_items=10)" == repr(timeout)


@pytest.mark.parametrize("field", ["first_item", "between_items"])
def test_stream_limits_accept_timedelta(field: str) -> None:
    """A timedelta is stored as its seconds, equal to the config built from the number."""
    config = Timeout(**{field: datetime.timedelta(seconds=1, milliseconds=500)})
    assert (1.5, Timeout(**{field: 1.5})) == (getattr(config, field), config)


@pytest.mark.parametrize("field", ["first_item", "between_items"])
@pytest.mark.parametrize(
    ("value", "error", "rule"),
    [
        (0, ValueError, "must be a number > 0, got 0"),
        (-1.5, ValueError, "must be a number > 0, got -1.5"),
        (datetime.timedelta(0), ValueError, "must be a number > 0, got 0.0"),
        (math.nan, ValueError, "must be a finite number > 0, got nan"),
        (math.inf, ValueError, "must be a finite number > 0, got inf"),
        ("5", TypeError, "must be a number > 0, got '5' of type str"),
        (True, TypeError, "must be a number > 0, got True of type bool"),
    ],
    ids=["zero", "negative", "zero-timedelta", "nan", "inf", "str", "bool"],
)
def test_bad_stream_limits_are_rejected(
    field: str, value: object, error: type[Exception], rule: str
) -> None:
    """A limit that is not a finite number > 0 fails at construction, naming the field."""
    with pytest.raises(error, match=f"^{re.escape(f'{field!r} {rule}')}$"):
        Timeout(**{field: value})


@pytest.mark.parametrize("field", ["first_item", "between_items"])
def test_a_stream_limit_not_shorter_than_total_warns(field: str) -> None:
    """A stream limit >= total can never fire first: it warns once, with this message."""
    message = (
        f"Timeout({field}=5.0, total=5.0): the {field} limit is not shorter than the total"
        " deadline, so it never fires first"
    )
    with pytest.warns(UserWarning, match=f"^{re.escape(message)}$") as caught:
        Timeout(total=5.0, **{field: 5.0})
    assert [UserWarning] == [w.category for w in caught]


def test_stream_limits_shorter_than_total_do_not_warn() -> None:
    """Limits under the deadline, or with no deadline, are fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Timeout(first_item=1.0, between_items=2.0, total=3.0)
        Timeout(first_item=100.0, between_items=100.0)
        Timeout(attempt=10.0, first_item=20.0)  # first_item replaces attempt for streams


def test_every_limit_at_the_deadline_warns_for_each() -> None:
    """attempt, first_item and between_items at the deadline: one warning each, in that order."""
    with pytest.warns(UserWarning, match="never fires first") as caught:
        Timeout(attempt=2.0, first_item=2.0, between_items=3.0, total=2.0)
    texts = [str(w.message) for w in caught]
    assert ["attempt", "first_item", "between_items"] == [
        re.match(r"Timeout\((\w+)=", text).group(1)  # type: ignore[union-attr]
        for text in texts
    ]
