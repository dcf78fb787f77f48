"""
Registering an openai or anthropic client's method whose client still retries by itself
warns, once per client (issue 21: 3 x 3 = 9 requests per call). Real SDK client objects,
offline: registering sends nothing.
"""

from __future__ import annotations

import functools
import warnings

import anthropic
import openai
import pytest

from policies import Retry
from supervisor import Supervisor

BASE = "http://127.0.0.1:9"  # never reached: nothing is called


def _registered(*registrations: tuple[str, object, Retry | None]) -> list[str]:
    sup = Supervisor()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, fn, retry in registrations:
            sup.register(name, fn, retry=retry)  # type: ignore[call-overload]
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_an_openai_client_that_retries_warns_once() -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=BASE)
    said = _registered(
        ("chat", client.chat.completions.create, Retry()),
        ("embed", client.embeddings.create, Retry()),
    )
    assert 1 == len(said), said
    assert said[0].startswith("'chat' is a method of an openai client that retries by itself")
    assert "max_retries=2" in said[0]
    assert "3 requests" in said[0]


def test_an_anthropic_client_that_retries_warns_also_through_a_partial() -> None:
    client = anthropic.AsyncAnthropic(api_key="test", base_url=BASE, max_retries=3)
    create = functools.partial(client.messages.create, model="claude", max_tokens=10)
    said = _registered(("claude", create, Retry()))
    assert 1 == len(said)
    assert "anthropic" in said[0]
    assert "max_retries=3" in said[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda: (
            openai.AsyncOpenAI(api_key="t", base_url=BASE, max_retries=0).chat.completions.create
        ),
        lambda: (
            openai.AsyncOpenAI(api_key="t", base_url=BASE)
            .with_options(max_retries=0)
            .chat.completions.create
        ),
        lambda: anthropic.AsyncAnthropic(api_key="t", base_url=BASE, max_retries=0).messages.create,
    ],
    ids=["openai max_retries=0", "with_options(max_retries=0)", "anthropic max_retries=0"],
)
def test_a_client_that_does_not_retry_is_silent(make: object) -> None:
    assert [] == _registered(("x", make(), Retry()))  # type: ignore[operator]


def test_without_a_retry_policy_there_is_no_double_retry() -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=BASE)
    assert [] == _registered(("chat", client.chat.completions.create, None))


def test_the_warning_points_at_the_registering_line() -> None:
    client = openai.AsyncOpenAI(api_key="test", base_url=BASE)
    sup = Supervisor()
    with pytest.warns(UserWarning, match="retries by itself") as caught:
        sup.register("chat", client.chat.completions.create, retry=Retry())
    assert __file__ == caught[0].filename
