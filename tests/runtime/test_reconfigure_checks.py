"""
``reconfigure()`` checks what it swaps in exactly as ``register()`` does (issue 16, item 3,
defect 7): a fallback of the wrong arity turned every later failure into a TypeError, and a
generator function was returned un-run, because only ``register()`` looked at them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from policies import Retry, backoff
from supervisor import Supervisor

from .conftest import guard

pytestmark = pytest.mark.anyio


async def ask(prompt: str, *, temperature: float = 0.0) -> str:
    """The dependency: down, so the fallback answers every call."""
    raise ConnectionError("down")


def cached(error: Exception, prompt: str, *, temperature: float = 0.0) -> str:
    return f"cached {prompt}"


def _cached_items(error: Exception, prompt: str, *, temperature: float = 0.0) -> Iterator[str]:
    yield f"cached {prompt}"


class _Bad:
    """Not a policy of any kind."""

    def __repr__(self) -> str:
        return "<bad>"


#: Every argument reconfigure() shares with register(), with values register() refuses.
BAD: dict[str, dict[str, Any]] = {
    "retry": {"retry": 3},
    "breaker": {"breaker": Retry()},
    "timeout": {"timeout": 5},
    "bulkhead": {"bulkhead": 8},
    "rate_limit": {"rate_limit": "60/min"},
    "rate_limit-item": {"rate_limit": [_Bad()]},
    "fallback_on": {"fallback_on": [_Bad()]},
    "fallback-not-callable": {"fallback": "cached"},
    "fallback-arity": {"fallback": lambda error: "cached"},
    "fallback-keyword": {"fallback": lambda error, prompt: "cached"},
    "fallback-generator": {"fallback": _cached_items},
}


def register_error(kwargs: dict[str, Any]) -> tuple[type[BaseException], str]:
    """What register() raises for *kwargs*, as (type, message)."""
    with pytest.raises((TypeError, ValueError)) as caught:
        Supervisor().register("dep", ask, **kwargs)
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize("kwargs", BAD.values(), ids=BAD.keys())
async def test_reconfigure_refuses_what_register_refuses_with_the_same_error(
    sup: Supervisor, kwargs: dict[str, Any]
) -> None:
    """Each bad value: reconfigure() raises register()'s error, word for word, and the
    dependency keeps its policies."""
    error, message = register_error(kwargs)
    sup.register("dep", ask, fallback=cached)
    with guard():
        async with sup:
            with pytest.raises(error, match=f"^{re.escape(message)}$"):
                await sup.reconfigure("dep", **kwargs)
            assert "cached hi" == await sup.call("dep", "hi")  # the old fallback still answers


async def test_a_fallback_of_the_wrong_arity_is_refused_for_the_function_registered(
    sup: Supervisor,
) -> None:
    """The fallback is checked against the function registered under the name (its
    parameters), not against a wrapper: the message names both signatures."""
    sup.register("dep", ask)
    with guard():
        async with sup:
            with pytest.raises(
                TypeError,
                match=r"^'fallback' .*<lambda>\(error\) cannot be called as fallback\(error,"
                r" \*args, \*\*kwargs\) for 'fn' ask\(prompt: 'str', \*, temperature: 'float'"
                r" = 0.0\) -> 'str': too many positional arguments$",
            ):
                await sup.reconfigure("dep", fallback=lambda error: "cached")


async def test_a_generator_fallback_is_refused(sup: Supervisor) -> None:
    """A sync generator function as the fallback would be returned un-run: refused."""
    sup.register("dep", ask)
    with guard():
        async with sup:
            with pytest.raises(
                TypeError,
                match=r"^'fallback' \(_cached_items\) is or wraps a generator function",
            ):
                await sup.reconfigure("dep", fallback=_cached_items)


async def test_a_good_fallback_and_none_still_swap(sup: Supervisor) -> None:
    """The checks let through what register() lets through: a fitting fallback, then None."""
    sup.register("dep", ask, retry=Retry(attempts=1, backoff=backoff.constant(0)))
    with guard():
        async with sup:
            await sup.reconfigure("dep", fallback=cached)
            assert "cached hi" == await sup.call("dep", "hi")
            await sup.reconfigure("dep", fallback=None)
            with pytest.raises(ConnectionError, match=r"^down$"):
                await sup.call("dep", "hi")
