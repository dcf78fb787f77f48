"""
Configuration from a TOML file and the environment: :func:`load_config` and :class:`Config`.

An operator's file (``examples/ringfence.toml`` is a documented one)::

    [defaults.retry]                  # every dependency's retry, unless it says otherwise
    attempts = 3

    [dependencies.llm.retry]          # merged per field: attempts = 3 still applies
    backoff = { full = { exponential = { base = 0.2, cap = "10s" } } }

    [dependencies.llm.breaker]
    failure_ratio = 0.5
    record = ["transient"]

and the environment on top of it: ``RINGFENCE_LLM__RETRY__ATTEMPTS=5``.

Theory of operation
-------------------
1. *Read.* Bytes, then strict UTF-8 (a BOM is allowed), then :mod:`tomllib`. A mapping given
   instead of a path takes the place of the parsed file.
2. *Environment.* ``RINGFENCE_<NAME>__<POLICY>[__<FIELD>[__...]]`` sets one key of the parsed
   tree, before anything is checked, so a value from the environment meets exactly the rules
   a value in the file meets. Its problems name the variable they came from.
3. *Structure.* Every table is walked against the policy classes' own ``attrs.fields(...)``,
   never a copy of their field lists: a field added to ``Retry`` is configurable the day it is
   added. What a field accepts is read from its annotation: schedules (``Backoff``,
   ``BreakDuration``) by factory name, error selectors (exceptions, predicates, kinds) as
   ``ErrorKind`` names, nested attrs classes (``Retry.budget``; ``Bulkhead.max_concurrent``'s
   ``AdaptiveLimit`` and ``Hedge.delay``'s ``Quantile``, beside a number) as tables, seconds
   as numbers or duration strings, ``false`` as ``None`` where ``None`` is allowed.
4. *Build.* Each policy is constructed, so the policies' own validators judge every value and
   their messages reach the operator unchanged, behind the key path. Each field is first
   checked alone (its converter and validator), so one table with three bad fields reports
   three problems; the whole object is built only when every field passed, which is where
   cross-field rules (``failure_threshold`` *and* ``failure_ratio``) speak.

Steps 1 and 2, the depth check below, and the problems' key paths and origins are reading
the sources: ``_config_source`` (its ``Reader``). This module interprets the tree they give
(steps 3 and 4) into policies and a :class:`Config`; its loader extends that ``Reader``.

Nothing is half-built: :func:`load_config` returns a complete :class:`Config` or raises one
:class:`ConfigError` listing every problem it found, each with its key path.

*Depth.* Steps 3 and 4 recurse into tables, and so do :mod:`tomllib` (into arrays and inline
tables) and a mapping's copy; TOML's dotted keys and the environment's ``__`` nest without
limit. A key path holds at most ``_MAX_DEPTH`` keys (a real one holds under ten): a longer
one is a problem at its path, cut there, and nothing is structured; what tomllib cannot read
for depth is a problem of the file (with its line) or of the variable. No ``RecursionError``
leaves :func:`load_config` (issue 16, item 3, defect 8).

Why not cattrs (DESIGN.md suggests it): the problems worth reporting are the policies' own
validator messages, and an attrs class raises only the first one from ``__init__``, whoever
calls it; cattrs would still need this module's per-field probing, plus hooks for schedules,
kinds, durations and "table or array of tables", which is most of the code. What cattrs adds
on top (``transform_error``'s "invalid value for type, expected float @ $.a.b") is less precise
than the validators' "must be a number > 0 and <= 1, got 2", and it would be a fourth runtime
dependency against the design card's three (anyio, attrs, structlog).
"""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Final, final

import attrs

from policies import backoff, break_duration
from policies.classify import ErrorKind
from policies.rate_limit import RateLimit

from ._config_source import KEYS as _KEYS
from ._config_source import POLICIES as _POLICIES
from ._config_source import KeyPath as _KeyPath
from ._config_source import Reader
from ._config_source import init_fields as _init_fields
from ._config_source import render as _render
from ._config_source import suggest as _suggest
from ._config_source import type_name as _type_name
from ._config_source import unknown as _unknown

__all__ = ("Config", "ConfigError", "load_config")

_ROOT_KEYS: Final = ("defaults", "dependencies")

#: Fields whose annotation names one of these take a schedule from the module, by name.
_SCHEDULES: Final[Mapping[str, types.ModuleType]] = {
    "Backoff": backoff,
    "BreakDuration": break_duration,
}
# Fields that take exceptions, predicates or kinds: `retry_on`, `record`, `ignore`. A file
# can only name kinds; exception types and predicates belong in code.
_SELECTOR: Final = re.compile(r"Exception|Error(Kind|Filter|Spec)|Matcher|(?<!Result)Predicate")

# Numbers that are not seconds, so a duration string there is a mistake, not "250ms" = 0.25.
# Every other float field or schedule argument is seconds (README: "all durations are
# seconds"). A `metadata={"unit": ...}` on the policies' fields would make this list
# unnecessary; until then it is the one place that knows.
_NOT_SECONDS: Final = frozenset(
    {"failure_ratio", "ratio", "factor", "rate", "burst", "min_per_second"}
)
_DURATION: Final = re.compile(r"(?P<n>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h)", re.ASCII)
_UNITS: Final[Mapping[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# A policy's message about one of its arguments: "'failure_ratio' must be ...".
_ABOUT_FIELD: Final = re.compile(r"'(?P<name>\w+)' (?P<rule>must\b.*)", re.DOTALL)


class ConfigError(ValueError):
    """
    A configuration file, mapping or environment that cannot be used; raised by
    :func:`load_config` (and ``Supervisor.from_config``) with every problem found, not just
    the first.

    Attributes:
        problems: ``(path, message)`` pairs in the order found, e.g.
            ``("dependencies.llm.breaker.failure_ratio", "must be a number > 0 and <= 1,
            got 2")``. The path is a key path in the file, the file's name for problems of
            the file as a whole, or an environment variable's name.
        source: the file's path as given, or ``"<mapping>"``.
    """

    def __init__(self, problems: Iterable[tuple[str, str]], *, source: str = "<mapping>") -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.source = source
        count = len(self.problems)
        lines = [f"{source}: {count} configuration problem{'' if count == 1 else 's'}"]
        lines.extend(f"  {path}: {message}" for path, message in self.problems)
        super().__init__("\n".join(lines))


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return types.MappingProxyType(dict(mapping))


def _frozen_nested(
    mapping: Mapping[str, Mapping[str, object]],
) -> Mapping[str, Mapping[str, object]]:
    return types.MappingProxyType({name: _frozen(table) for name, table in mapping.items()})


@final
@attrs.frozen(kw_only=True)
class Config:
    """
    A validated configuration: what ``register(name, fn)`` gets for each dependency.

    Attributes:
        source: the file's path as given, or ``"<mapping>"``.
        defaults: policy name → policy object from ``[defaults]`` (``"retry"`` →
            ``Retry(...)``, ``"rate_limit"`` → a ``RateLimit`` or a tuple of them,
            ``"critical"`` → ``bool``; ``None`` where the file says ``false``). A dependency
            the file does not list gets these.
        dependencies: dependency name → its *effective* policies, defaults merged in.
        overrides: the environment variables that were applied, sorted.

    Merging is per field: ``[defaults.retry] attempts = 3`` and ``[dependencies.llm.retry]
    backoff = ...`` give llm a ``Retry`` with both. A value is replaced whole, so a schedule
    or a nested table in a dependency replaces the default's; ``rate_limit`` is replaced
    whole too (an array of limits does not merge field by field). A policy set to ``false``
    in a dependency switches the default off for it.
    """

    source: str = "<mapping>"
    defaults: Mapping[str, object] = attrs.field(factory=dict, converter=_frozen)
    dependencies: Mapping[str, Mapping[str, object]] = attrs.field(
        factory=dict, converter=_frozen_nested
    )
    overrides: tuple[str, ...] = ()

    def policies_for(self, name: str) -> dict[str, object]:
        """
        The keyword arguments ``register(name, fn, ...)`` takes from this configuration.

        Returns:
            A new dict (``"retry"``, ``"breaker"``, ... → policy object or ``None``,
            ``"critical"`` → ``bool``) holding only what the file configures: the
            dependency's effective policies, or the defaults for a name the file does not
            list.
        """
        table = self.dependencies.get(name)
        return dict(self.defaults if table is None else table)

    def describe(self) -> str:
        """The effective configuration as text: one line per policy, with its repr."""
        lines = [f"# ringfence configuration from {self.source}"]
        if self.overrides:
            lines.append(f"# environment overrides: {', '.join(self.overrides)}")
        sections: list[tuple[_KeyPath, Mapping[str, object]]] = [(("defaults",), self.defaults)]
        sections.extend(
            (("dependencies", name), table) for name, table in self.dependencies.items()
        )
        for path, table in sections:
            lines.append("")
            lines.append(f"[{_render(path)}]")
            if not table:
                lines.append("# no policies: calls pass straight through")
            lines.extend(f"{key} = {value!r}" for key, value in table.items())
        return "\n".join(lines) + "\n"


def load_config(
    source: str | os.PathLike[str] | Mapping[str, object],
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """
    Read, override from the environment, and validate a ringfence configuration.

    The file holds a ``[defaults]`` table and ``[dependencies.<name>]`` tables whose keys are
    ``register()``'s policy arguments: ``retry``, ``breaker``, ``timeout``, ``bulkhead`` (tables
    of the policy's fields), ``rate_limit`` (a table, or an array of tables for several
    limits) and ``critical`` (``true``/``false``). Inside them:

    - numbers of seconds may be written ``"250ms"``, ``"30s"``, ``"5m"`` or ``"1h"``;
    - schedules are named: ``backoff = { exponential = { base = 0.2, cap = 10 } }``,
      ``backoff = { full = { exponential = {} } }`` (a wrapper's ``inner`` schedule, written
      inside it), ``backoff = "decorrelated"`` (its defaults), ``break_duration = 30`` or
      ``{ adaptive = { start = 5 } }``;
    - a field that takes a policy object is a table of its fields:
      ``max_concurrent = { min = 1, max = 64 }`` is an ``AdaptiveLimit`` (a number stays a
      fixed limit), ``delay = { q = 0.95 }`` a ``Quantile``;
    - ``retry_on``, ``record`` and ``ignore`` list error kinds, ``["transient",
      "rate_limited"]`` (see ``policies.ErrorKind``); exception types and predicates cannot
      come from a file, they are given in code;
    - ``false`` means ``None`` for a field that allows it (``total = false``: no deadline),
      and no policy at all for a whole policy (``retry = false``).

    Environment variables ``RINGFENCE_<NAME>__<POLICY>__<FIELD>=value`` (and
    ``RINGFENCE_DEFAULTS__...``) override the file. ``<NAME>`` is a dependency of the file,
    matched case-insensitively with every non-alphanumeric character read as ``_``
    (``llm-eu`` is ``LLM_EU``); deeper keys reach into tables (``...__BACKOFF__EXPONENTIAL__BASE``).
    The value is read as a TOML value (``0.3``, ``true``, ``"text"``, ``{ constant = 1 }``,
    ``["transient"]``), else taken as a bare string (``250ms``, ``transient,rate_limited``).
    A ``RINGFENCE_`` variable that names no dependency, policy or field is a problem.

    Args:
        source: a TOML file's path, or a mapping shaped like the parsed file.
        env: the environment to read overrides from; ``os.environ`` when ``None``. Pass
            ``{}`` to ignore the environment.

    Returns:
        The validated :class:`Config`.

    Raises:
        ConfigError: with every problem found: unreadable or invalid file, unknown keys (with
            a suggestion), wrong types, values out of range, unknown schedules or kinds,
            environment variables that match nothing.

    Warns:
        UserWarning: what a policy warns about at construction (``Timeout`` with
            ``attempt >= total``), prefixed with its key path.
    """
    loader = _Loader()
    tree: dict[str, object] | None
    if isinstance(source, Mapping):
        label = "<mapping>"
        tree = loader.thaw(typing.cast("Mapping[object, object]", source), ())
    else:
        label = os.fspath(source)
        tree = loader.read(label)
    config: Config | None = None
    if tree is not None:
        overrides = loader.apply_env(tree, os.environ if env is None else env)
        loader.check_depth(tree)
        if not loader.too_deep:  # structuring recurses: only into a tree of bounded depth
            config = loader.structure(tree, label, overrides)
    if loader.problems or config is None:
        raise ConfigError(loader.ordered(), source=label)
    for message, category in loader.warned:
        warnings.warn(message, category, stacklevel=2)
    return config


# =============================================================================================


# =============================================================================================
# Durations and the policy classes' fields


def _seconds(text: str) -> float | None:
    """``"250ms"`` → 0.25, ``"5m"`` → 300.0; ``None`` when *text* is not a duration."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    return float(match["n"]) * _UNITS[match["unit"]]


def _annotation(cls: type, field: attrs.Attribute[object]) -> str:
    """The field's annotation as text: ``"float | None"``, ``"_backoff.Backoff"``."""
    annotation: object = field.type  # a str under `from __future__ import annotations`
    return annotation if isinstance(annotation, str) else str(annotation)


def _nested_class(cls: type, field: attrs.Attribute[object]) -> type | None:
    """The attrs class a field holds (``Retry.budget`` → ``Budget``), if any."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: treat the field as plain
        return None
    hint = hints.get(field.name)
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and attrs.has(candidate):
            return candidate
    return None


def _table_hint(cls: type, field: attrs.Attribute[object]) -> str:
    """
    What a file may write instead, when a field that also takes a nested class's table got a
    value of the wrong type: ``max_concurrent = "adaptive"`` is told that a table of
    ``AdaptiveLimit``'s fields is the adaptive limit (a policy's message names only the number).
    """
    nested = _nested_class(cls, field)
    if nested is None:
        return ""
    names = list(_init_fields(nested))
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"; or a table of {nested.__name__} fields ({shown})"


def _label(module: types.ModuleType) -> str:
    """``policies.backoff`` → ``backoff``, as users write it."""
    return module.__name__.rsplit(".", 1)[-1]


def _schedule_names(module: types.ModuleType) -> tuple[str, ...]:
    """The public factories of a schedule module: its ``__all__`` functions, ``as_*`` aside."""
    names: Iterable[str] = getattr(module, "__all__", ())
    return tuple(
        name
        for name in names
        if inspect.isfunction(getattr(module, name)) and not name.startswith("as_")
    )


# =============================================================================================
# The loader: one pass that collects every problem


@final
@attrs.define
class _Given:
    """
    One policy table, structured, and what went wrong with it.

    Attributes:
        values: argument name → converted value, for the values that converted.
        bad: argument names with a problem of their own.
        flawed: the table has a problem no argument owns (an unknown key): it is not built.
        conflict: building the whole object failed on a cross-field rule; its values are
            not merged into dependencies, which would only repeat the problem.
    """

    values: dict[str, object]
    bad: set[str] = attrs.field(factory=set)
    flawed: bool = False
    conflict: bool = False

    def usable(self) -> dict[str, object]:
        """The values a dependency inherits from this [defaults] table."""
        if self.conflict:
            return {}
        return {key: value for key, value in self.values.items() if key not in self.bad}


@final
@attrs.frozen
class _Many:
    """``rate_limit`` as an array of tables."""

    items: list[_Given]


_FACTORY: Final[type] = type(attrs.Factory(list))
_ABSENT: Final = object()  # a key the table does not hold
_INVALID: Final = object()  # a value that already produced a problem


@final
class _Loader(Reader):
    """Walks one configuration, collecting problems instead of stopping at the first: the
    sources are read by :class:`Reader`, and interpreted here."""

    def __init__(self) -> None:
        super().__init__()
        self.warned: list[tuple[str, type[Warning]]] = []
        self._built_defaults: dict[str, object] = {}

    def add_exception(self, path: _KeyPath, exc: Exception, names: Iterable[str]) -> set[str]:
        """Report a policy's or factory's own message; returns the argument it names, if any."""
        message = str(exc)
        match = _ABOUT_FIELD.fullmatch(message)
        if match is not None and match["name"] in set(names):
            self.add((*path, match["name"]), match["rule"])
            return {match["name"]}
        self.add(path, message)
        return set()

    # -------------------------------------------------------------------------- structure

    def structure(
        self, tree: dict[str, object], label: str, overrides: tuple[str, ...]
    ) -> Config | None:
        for key in tree:
            self.visit((key,))
            if key not in _ROOT_KEYS:
                self.add((key,), _unknown("key", key, _ROOT_KEYS))
        defaults_path: _KeyPath = ("defaults",)
        defaults_spec = self.table(tree.get("defaults", {}), defaults_path, "[defaults]")
        defaults = self.build_table(defaults_spec, {}, defaults_path)
        self._built_defaults = defaults
        dependencies: dict[str, Mapping[str, object]] = {}
        raw = tree.get("dependencies", {})
        if not isinstance(raw, dict):
            self.add(
                ("dependencies",),
                f"must be a table of [dependencies.<name>] tables, got {_type_name(raw)}",
            )
            raw = {}
        for name, table in raw.items():
            path: _KeyPath = ("dependencies", name)
            self.visit(path)
            if not name:
                self.add(path, "a dependency name must not be empty")
                continue
            spec = self.table(table, path, "[dependencies.<name>]")
            dependencies[name] = self.build_table(spec, defaults_spec, path)
        if self.problems:
            return None
        return Config(
            source=label, defaults=defaults, dependencies=dependencies, overrides=overrides
        )

    def table(self, raw: object, path: _KeyPath, what: str) -> dict[str, object]:
        """One [defaults] or dependency table: policy name → structured value."""
        spec: dict[str, object] = {}
        if not isinstance(raw, dict):
            self.add(path, f"must be a {what} table of policies, got {_type_name(raw)}")
            return spec
        for key, value in raw.items():
            where = (*path, key)
            self.visit(where)
            if key not in _KEYS:
                self.add(where, _unknown("policy", key, _KEYS))
            elif key == "critical":
                if isinstance(value, bool):
                    spec[key] = value
                else:
                    self.add(where, f"must be true or false, got {_type_name(value)}")
            elif value is False:
                spec[key] = None
            elif key == "rate_limit" and isinstance(value, list):
                if not value:
                    self.add(where, "must hold at least one limit, or be false for none")
                    continue
                items = [self.fields(RateLimit, item, (*where, i)) for i, item in enumerate(value)]
                spec[key] = _Many(items)
            else:
                spec[key] = self.fields(_POLICIES[key], value, where)
        return spec

    def fields(self, cls: type, raw: object, path: _KeyPath) -> _Given:
        """A table of *cls*'s fields, each value converted to what *cls* takes."""
        given = _Given({})
        if not isinstance(raw, dict):
            shape = "a table or an array of tables" if cls is RateLimit else "a table"
            self.add(
                path,
                f"must be {shape} of {cls.__name__} fields, or false for none,"
                f" got {_type_name(raw)}",
            )
            given.flawed = True
            return given
        fields = _init_fields(cls)
        for key, value in raw.items():
            self.visit((*path, key))
            field = fields.get(key)
            if field is None:
                self.add((*path, key), _unknown(f"field of {cls.__name__}", key, fields))
                given.flawed = True
                continue
            converted = self.convert(cls, field, value, (*path, key))
            if converted is _INVALID:
                given.bad.add(key)
            else:
                given.values[key] = converted
        return given

    def convert(
        self, cls: type, field: attrs.Attribute[object], raw: object, path: _KeyPath
    ) -> object:
        """A file's value as the Python value *field* takes; ``_INVALID`` after a problem."""
        name = field.alias or field.name
        text = _annotation(cls, field)
        if raw is False and re.search(r"\bNone\b|Optional", text) and "bool" not in text:
            return None
        if _SELECTOR.search(text) and (
            isinstance(raw, str) or (isinstance(raw, list) and all(isinstance(k, str) for k in raw))
        ):
            return self.kinds(raw, path, name)
        for marker, module in _SCHEDULES.items():
            if re.search(rf"\b{marker}\b", text):
                return self.schedule(module, raw, path)
        nested = _nested_class(cls, field)
        if nested is not None and isinstance(raw, dict):
            built = self.build(nested, self.fields(nested, raw, path), path)
            return _INVALID if built is None else built
        if isinstance(raw, str) and re.search(r"\bfloat\b", text) and name not in _NOT_SECONDS:
            return self.seconds(raw, path)
        return raw

    def seconds(self, raw: str, path: _KeyPath) -> object:
        value = _seconds(raw)
        if value is None:
            self.add(
                path,
                "must be seconds: a number, or a string such as '250ms', '30s', '5m' or '1h',"
                f" got {raw!r}",
            )
            return _INVALID
        return value

    def kinds(self, raw: str | list[str], path: _KeyPath, name: str) -> object:
        """Error-kind names (a list, or one string of comma-separated names) as a tuple."""
        names = raw if isinstance(raw, list) else [part.strip() for part in raw.split(",")]
        known = [kind.value for kind in ErrorKind]
        kinds: list[ErrorKind] = []
        ok = True
        for i, word in enumerate(names):
            if word in known:
                kinds.append(ErrorKind(word))
                continue
            ok = False
            where = (*path, i) if isinstance(raw, list) else path
            hint = _suggest(word, known)
            if hint:
                self.add(where, f"unknown error kind {word!r}{hint}")
                continue
            self.add(
                where,
                f"unknown error kind {word!r}; expected one of: {', '.join(known)}"
                " (exception types and predicates cannot come from a file:"
                f" pass {name}=... to register() in code)",
            )
        return tuple(kinds) if ok else _INVALID

    def schedule(self, module: types.ModuleType, raw: object, path: _KeyPath) -> object:
        """``{ exponential = { base = 0.2 } }``, ``"exponential"`` or a number, as a schedule."""
        names = _schedule_names(module)
        label = _label(module)
        if isinstance(raw, str):
            seconds = _seconds(raw)
            if seconds is not None:
                return seconds  # break_duration = "30s"; Retry rejects a number for backoff
            if raw in names:
                return self.factory(module, raw, {}, path)
            self.add(path, _unknown(f"{label} schedule {raw!r}", raw, names))
            return _INVALID
        if isinstance(raw, dict):
            if len(raw) != 1:
                self.add(
                    path,
                    f"must name exactly one {label} schedule, such as"
                    f" {{ {names[0]} = {{ ... }} }}; got {len(raw)} keys"
                    + (f": {', '.join(raw)}" if raw else ""),
                )
                return _INVALID
            ((name, arguments),) = raw.items()
            if name not in names:
                self.add(path, _unknown(f"{label} schedule {name!r}", name, names))
                return _INVALID
            return self.factory(module, name, arguments, path)
        return raw  # a number (break_duration = 30) or a callable from a mapping source

    def factory(
        self, module: types.ModuleType, name: str, arguments: object, path: _KeyPath
    ) -> object:
        function: Callable[..., object] = getattr(module, name)
        parameters = inspect.signature(function).parameters
        names = _schedule_names(module)
        where = (*path, name)
        before = len(self.problems)
        kwargs: dict[str, object] = {}
        if not isinstance(arguments, dict):
            # { constant = 0.5 } or { full = "exponential" }: the first argument.
            arguments = {next(iter(parameters)): arguments}
        for key, value in arguments.items():
            if key in parameters:
                kwargs[key] = self.argument(module, key, value, (*where, key))
            elif "inner" in parameters and "inner" not in kwargs and key in names:
                # { full = { exponential = {...} } }: the wrapped schedule, written inside.
                kwargs["inner"] = self.schedule(module, {key: value}, where)
            else:
                choices = [*parameters, *(names if "inner" in parameters else ())]
                what = f"argument of {_label(module)}.{name}"
                self.add((*where, key), _unknown(what, key, choices))
        missing = [
            repr(parameter.name)
            for parameter in parameters.values()
            if parameter.default is inspect.Parameter.empty and parameter.name not in kwargs
        ]
        if missing and len(self.problems) == before:
            self.add(where, f"missing argument {', '.join(missing)}")
        if len(self.problems) > before or _INVALID in kwargs.values():
            return _INVALID
        try:
            return function(**kwargs)
        except (TypeError, ValueError) as exc:
            self.add_exception(where, exc, parameters)
            return _INVALID

    def argument(self, module: types.ModuleType, key: str, value: object, path: _KeyPath) -> object:
        if key == "inner":
            return self.schedule(module, value, path)
        if isinstance(value, str) and key not in _NOT_SECONDS:
            return self.seconds(value, path)
        return value

    # ------------------------------------------------------------------------------ build

    def build_table(
        self, spec: Mapping[str, object], base: Mapping[str, object], path: _KeyPath
    ) -> dict[str, object]:
        """A table's policy objects, its fields merged over *base*'s (the defaults')."""
        built: dict[str, object] = {}
        for key in _KEYS:
            mine = spec.get(key, _ABSENT)
            theirs = base.get(key, _ABSENT)
            if mine is _ABSENT:
                if theirs is not _ABSENT and key in self._built_defaults:
                    built[key] = self._built_defaults[key]
                continue
            where = (*path, key)
            if isinstance(mine, _Many):
                limits = [
                    self.build(RateLimit, item, (*where, i)) for i, item in enumerate(mine.items)
                ]
                built[key] = tuple(limits)
            elif isinstance(mine, _Given):
                if isinstance(theirs, _Given) and key != "rate_limit":
                    mine = _Given({**theirs.usable(), **mine.values}, mine.bad, mine.flawed)
                built[key] = self.build(_POLICIES[key], mine, where)
            else:
                built[key] = mine  # critical, or None for `false`
        return built

    def build(self, cls: type, given: _Given, path: _KeyPath) -> object | None:
        """``cls(**given.values)``, with every field's problem reported; ``None`` on any."""
        fields = _init_fields(cls)
        before = len(self.problems)
        for name, field in fields.items():
            given_at_all = name in given.values or name in given.bad
            if not given_at_all and not given.flawed and field.default is attrs.NOTHING:
                complete = (
                    " (a [defaults] policy must be complete: dependencies the file does not"
                    " list get it as it is)"
                    if path[0] == "defaults"
                    else ""
                )
                self.add((*path, name), f"missing: {cls.__name__} has no default for it{complete}")
        # Every field alone first, so one table with three bad values reports three problems.
        stub = self._stub(fields, given.values)
        for name, value in given.values.items():
            if not self._check_alone(cls, fields[name], value, stub, (*path, name)):
                given.bad.add(name)
        if given.flawed or given.bad or len(self.problems) > before:
            return None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                built: object = cls(**given.values)
            except (TypeError, ValueError) as exc:
                named = self.add_exception(path, exc, fields)
                given.bad.update(named)
                given.conflict = not named
                return None
        self.warned.extend((f"{_render(path)}: {w.message}", w.category) for w in caught)
        return built

    def _stub(
        self, fields: Mapping[str, attrs.Attribute[object]], values: Mapping[str, object]
    ) -> types.SimpleNamespace:
        """An object with the given values and the defaults, for validators that read self."""
        stub = types.SimpleNamespace()
        for name, field in fields.items():
            value = values.get(name, field.default)
            if isinstance(value, _FACTORY):
                factory: typing.Any = value  # attrs types Factory as a function
                value = None if factory.takes_self else factory.factory()
            setattr(stub, field.name, None if value is attrs.NOTHING else value)
        return stub

    def _check_alone(
        self,
        cls: type,
        field: attrs.Attribute[object],
        value: object,
        stub: object,
        path: _KeyPath,
    ) -> bool:
        """Run one field's converter and validator; report a message about that field."""
        name = field.alias or field.name
        try:
            converter = field.converter
            if converter is not None and not isinstance(converter, attrs.Converter):
                value = converter(value)
            if field.validator is not None:
                field.validator(stub, field, value)
        except (TypeError, ValueError) as exc:
            match = _ABOUT_FIELD.fullmatch(str(exc))
            if match is not None and match["name"] == name:
                hint = _table_hint(cls, field) if isinstance(exc, TypeError) else ""
                self.add(path, match["rule"] + hint)
                return False
        except Exception:
            # A cross-field validator tripping over the stub: cross-field rules are checked when the whole object is built, with real values.
            pass
        return True
