"""
``ringfence config FILE``'s output: the effective configuration as TOML that loads back.

Every policy is written field by field with the value it works with, the defaults the
policies fill in included (``Breaker.effective()``: a ratio breaker's ``min_throughput = 10``,
not nothing); ``None`` is written ``false``, as the file format reads it; schedules are named
tables (``backoff = { full = { exponential = { base = 0.2, ... } } }``); error filters list
their kinds.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import types
from collections.abc import Mapping
from typing import Final

import attrs

from policies import Breaker, ErrorFilter, backoff, break_duration

from ._config import Config

__all__ = ("effective_toml",)

_SCHEDULES: Final[Mapping[str, types.ModuleType]] = {
    "backoff": backoff,
    "break_duration": break_duration,
}


def effective_toml(config: Config) -> str:
    """*config* as TOML: ``[defaults]`` then each ``[dependencies.NAME]``, every field given."""
    lines = [f"# ringfence configuration from {config.source}: the effective values"]
    if config.overrides:
        lines.append(f"# environment overrides: {', '.join(config.overrides)}")
    sections: list[tuple[str, Mapping[str, object]]] = [("defaults", config.defaults)]
    sections.extend(
        (f"dependencies.{_key(name)}", table) for name, table in config.dependencies.items()
    )
    for header, table in sections:
        lines.extend(("", f"[{header}]"))
        if not table:
            lines.append("# no policies: calls pass straight through")
        later: list[str] = []
        for key, value in table.items():
            if isinstance(value, tuple):  # several rate limits: an array of tables
                for item in value:
                    later.extend(("", f"[[{header}.{key}]]", *_fields(item)))
            elif attrs.has(type(value)):
                later.extend(("", f"[{header}.{key}]", *_fields(value)))
            else:
                lines.append(f"{key} = {_value(value)}")
        lines.extend(later)
    return "\n".join(lines) + "\n"


def _fields(policy: object) -> list[str]:
    if isinstance(policy, Breaker):
        policy = policy.effective()
    cls = type(policy)
    assert attrs.has(cls)
    return [
        f"{field.name} = {_value(getattr(policy, field.name), field.name)}"
        for field in attrs.fields(cls)
    ]


def _value(value: object, name: str = "") -> str:
    if value is None:
        return "false"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, ErrorFilter):
        return _value(sorted(str(kind) for kind in value.kinds))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if name in _SCHEDULES:
        table = _schedule(repr(value))
        if table is not None:
            return _value(table)
    cls = type(value)
    if attrs.has(cls):
        return _value({f.name: getattr(value, f.name) for f in attrs.fields(cls)})
    # Only code gives these (a callable cost, an exception type): a file cannot say them.
    return json.dumps(f"<given in code: {value!r}>")


def _schedule(text: str) -> dict[str, object] | None:
    """``backoff.full(backoff.exponential(base=0.2))`` as ``{full = {exponential = {...}}}``."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    return _call(node)


def _call(node: ast.expr) -> dict[str, object] | None:
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in _SCHEDULES
    ):
        return None
    module, name = _SCHEDULES[node.func.value.id], node.func.attr
    parameters = list(inspect.signature(getattr(module, name)).parameters)
    arguments: dict[str, object] = {}
    nested: dict[str, object] = {}
    given = [*zip(parameters, node.args, strict=False), *((k.arg, k.value) for k in node.keywords)]
    for key, argument in given:
        if isinstance(argument, ast.Call):  # the wrapped schedule is written inside
            inner = _call(argument)
            if inner is None:
                return None
            nested.update(inner)
            continue
        if isinstance(argument, ast.Name) and argument.id == "inf":
            arguments[str(key)] = math.inf
            continue
        try:
            arguments[str(key)] = ast.literal_eval(argument)
        except ValueError:
            return None
    return {name: {**nested, **arguments}}


def _key(name: str) -> str:
    """A bare TOML key when it can be one, else a quoted one."""
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    return name if bare else json.dumps(name)
