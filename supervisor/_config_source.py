"""
The sources of a configuration, read for :mod:`supervisor._config`: a TOML file or a mapping,
and the environment's ``RINGFENCE_...`` overrides written into it, with the problems found on
the way, each at its key path and named by the variable a value came from.

Steps 1 and 2 of ``_config``'s theory of operation, and the depth check that guards steps 3
and 4 (see *Depth* there): :class:`Reader` turns a source into a plain tree of dicts and lists
of bounded depth and collects problems instead of stopping at the first; interpreting that
tree into policies and a ``Config`` is ``_config``'s (its loader extends :class:`Reader`).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final, TypeAlias

import attrs

from ._spec import POLICY_TYPES

__all__ = (
    "KEYS",
    "POLICIES",
    "Key",
    "KeyPath",
    "Reader",
    "init_fields",
    "render",
    "suggest",
    "type_name",
    "unknown",
)

Key: TypeAlias = str | int
KeyPath: TypeAlias = tuple[Key, ...]

#: register()'s policy arguments and the class each one is built from.
POLICIES: Final[Mapping[str, type]] = {key: kind for key, (kind, _) in POLICY_TYPES.items()}
#: Every key a [defaults] or [dependencies.<name>] table may hold, in register()'s order.
KEYS: Final = (*POLICIES, "critical")

_ENV_PREFIX: Final = "RINGFENCE_"
#: Keys in a key path at most (``dependencies.llm.retry.backoff.full.exponential.base`` is 7):
#: deep enough for any schedule worth writing, shallow enough for every recursive step here.
_MAX_DEPTH: Final = 32
_TOO_DEEP: Final = f"nested too deeply: a key path holds at most {_MAX_DEPTH} keys"
#: What tomllib cannot read for depth (its parser recurses into arrays and inline tables).
_TOO_DEEP_TO_READ: Final = "arrays or inline tables nested too deeply to read"
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_UNREADABLE: Final = object()  # an environment value too deep for tomllib


# =============================================================================================
# Key paths and suggestions


def render(path: KeyPath) -> str:
    """``("dependencies", "api.v2", "rate_limit", 0)`` → ``dependencies."api.v2".rate_limit[0]``."""
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
            continue
        bare = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
        text = f"{text}.{bare}" if text else bare
    return text


def _closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice *word* most likely misspells or abbreviates (``expo`` → ``exponential``)."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    # difflib's ratio punishes abbreviations ("expo" is 0.53 of "exponential"); a prefix
    # shared with exactly one choice is as clear a hint.
    prefixed = [choice for choice in choices if len(word) >= 3 and choice.startswith(word)]
    return prefixed[0] if len(prefixed) == 1 else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """``", did you mean 'attempts'?"``, or ``""`` when nothing is close."""
    close = _closest(word, choices)
    return f", did you mean {close!r}?" if close else ""


def unknown(what: str, word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    hint = suggest(word, choices)
    if hint:
        return f"unknown {what}{hint}"
    return f"unknown {what}; expected one of: {', '.join(choices)}"


def type_name(value: object) -> str:
    return f"{value!r} of type {type(value).__name__}"


def _env_name(name: str) -> str:
    """A dependency name as it appears in an environment variable: ``llm-eu`` → ``LLM_EU``."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _env_value(text: str) -> object:
    """An environment value read as a TOML value, else the bare string; ``_UNREADABLE``
    when it nests too deeply for tomllib."""
    try:
        document = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        return _UNREADABLE
    # "1\nx = 2" parses as two keys: that is a string that happens to contain TOML.
    return document["v"] if list(document) == ["v"] else text


def _deep_line(text: str) -> int:
    """
    The line at which *text* nests too deeply for tomllib (1-based): the fewest leading lines
    that still raise ``RecursionError``. A binary search over prefixes: tomllib reads in order,
    so a longer prefix reaches at least as deep.
    """
    lines = text.splitlines(keepends=True)
    fine, deep = 0, len(lines)  # a prefix of `fine` lines is read, one of `deep` lines is not
    while deep - fine > 1:
        middle = (fine + deep) // 2
        try:
            tomllib.loads("".join(lines[:middle]))
        except RecursionError:
            deep = middle
        except tomllib.TOMLDecodeError:
            fine = middle
        else:
            fine = middle
    return deep


def init_fields(cls: type) -> dict[str, attrs.Attribute[object]]:
    """The fields ``cls(...)`` takes, by argument name (attrs strips a leading ``_``)."""
    fields: tuple[attrs.Attribute[object], ...] = attrs.fields(cls)
    return {field.alias or field.name: field for field in fields if field.init}


# =============================================================================================
# The reader: problems, sources, the environment, depth


class Reader:
    """Reads one configuration's sources, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        # Key paths set from the environment, and the variable that set each.
        self._origins: dict[KeyPath, str] = {}
        self._ranks: list[int] = []
        self._seen: dict[KeyPath, int] = {}
        #: a key path longer than _MAX_DEPTH was found (and cut): nothing is structured.
        self.too_deep = False

    def add(self, path: KeyPath, message: str) -> None:
        for length in range(len(path), 0, -1):
            variable = self._origins.get(path[:length])
            if variable is not None:
                message = f"{message} (from {variable})"
                break
        # Rank by where the path was met while walking the tree, so problems come out in the
        # file's order even though values are converted first and objects built after.
        ranks = (self._seen[path[:n]] for n in range(len(path), 0, -1) if path[:n] in self._seen)
        self.note((render(path), message), next(ranks, 0))

    def note(self, problem: tuple[str, str], rank: int = -1) -> None:
        """Record a problem; rank -1 (the file itself, the environment) comes first."""
        self.problems.append(problem)
        self._ranks.append(rank)

    def visit(self, path: KeyPath) -> None:
        """Remember that *path* was met, in walking order."""
        self._seen.setdefault(path, len(self._seen))

    def ordered(self) -> list[tuple[str, str]]:
        """The problems in the file's order (stable for problems of one path)."""
        order = sorted(range(len(self.problems)), key=self._ranks.__getitem__)
        return [self.problems[i] for i in order]

    def cut(self, path: KeyPath) -> None:
        """*path* has more than ``_MAX_DEPTH`` keys: a problem there, and no structuring."""
        self.too_deep = True
        self.add(path, _TOO_DEEP)

    def check_depth(self, tree: dict[str, object]) -> None:
        """Report every key path longer than ``_MAX_DEPTH``, once, cut at its first key too
        many. Iterative (an explicit stack), so any depth, even a cycle, is walked safely."""
        stack: list[tuple[KeyPath, object]] = [((), tree)]
        while stack:
            path, node = stack.pop()
            children: Iterable[tuple[Key, object]]
            if isinstance(node, dict):
                children = node.items()
            elif isinstance(node, list):
                children = enumerate(node)
            else:
                continue
            found: list[tuple[KeyPath, object]] = []
            for key, child in children:
                where = (*path, key)
                if len(where) > _MAX_DEPTH:
                    self.cut(where)
                else:
                    found.append((where, child))
            stack.extend(reversed(found))  # depth first, in the file's order

    # ----------------------------------------------------------------------------- reading

    def read(self, label: str) -> dict[str, object] | None:
        try:
            data = Path(label).read_bytes()
        except FileNotFoundError:
            self.note((label, "no such file"))
            return None
        except IsADirectoryError:
            self.note((label, "is a directory, not a TOML file"))
            return None
        except OSError as exc:
            self.note((label, f"cannot be read: {exc.strerror or exc}"))
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.note((label, f"is not UTF-8: byte {data[exc.start]:#04x} at offset {exc.start}"))
            return None
        # Editors on Windows may start the file with a BOM; TOML itself forbids nothing
        # else about the encoding but UTF-8.
        text = text.removeprefix("\ufeff")
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            self.note((label, f"invalid TOML: {exc}"))
            return None
        except RecursionError:
            self.note((label, f"invalid TOML: {_TOO_DEEP_TO_READ} (line {_deep_line(text)})"))
            return None

    def thaw(self, mapping: Mapping[object, object], path: KeyPath) -> dict[str, object]:
        """A mapping source as plain dicts (so overrides never write into the caller's)."""
        tree: dict[str, object] = {}
        for key, value in mapping.items():
            if not isinstance(key, str):
                self.add(path, f"keys must be strings, got {type_name(key)}")
                continue
            where = (*path, key)
            if len(where) > _MAX_DEPTH:  # before recursing: a mapping may even hold itself
                self.cut(where)
            elif isinstance(value, Mapping):
                tree[key] = self.thaw(value, where)
            elif isinstance(value, list):
                tree[key] = [
                    self.thaw(item, (*where, i)) if isinstance(item, Mapping) else item
                    for i, item in enumerate(value)
                ]
            else:
                tree[key] = value
        return tree

    # ------------------------------------------------------------------------- environment

    def apply_env(self, tree: dict[str, object], env: Mapping[str, str]) -> tuple[str, ...]:
        """Write ``RINGFENCE_...`` variables into *tree*; returns the names applied."""
        dependencies = tree.get("dependencies")
        names = list(dependencies) if isinstance(dependencies, dict) else []
        targets: dict[str, list[KeyPath]] = {"DEFAULTS": [("defaults",)]}
        spelled = {"DEFAULTS": "DEFAULTS"}  # how the file spells each name, for suggestions
        for name in names:
            targets.setdefault(_env_name(name), []).append(("dependencies", name))
            spelled.setdefault(_env_name(name), name)
        settings: list[tuple[int, str, KeyPath, object]] = []
        for variable in sorted(env):
            if not variable.startswith(_ENV_PREFIX):
                continue
            rest = variable[len(_ENV_PREFIX) :].upper()
            matches = [key for key in targets if rest == key or rest.startswith(key + "__")]
            if not matches:
                head = rest.split("__", 1)[0]
                close = _closest(head, targets)
                hint = f", did you mean {spelled[close]!r}?" if close else ""
                self.note(
                    (
                        variable,
                        f"no dependency {head!r} in the file{hint}"
                        " (configure only dependencies the file lists, or DEFAULTS)",
                    )
                )
                continue
            key = max(matches, key=len)  # "LLM_EU" before "LLM" for RINGFENCE_LLM_EU__...
            if len(targets[key]) > 1:
                listed = " and ".join(render(path) for path in targets[key])
                self.note((variable, f"{key} matches {listed}; rename one of them in the file"))
                continue
            parts = rest[len(key) + 2 :].lower().split("__") if rest != key else []
            path = self._env_path(variable, targets[key][0], parts)
            if path is None:
                continue
            value = _env_value(env[variable])
            if value is _UNREADABLE:
                self.note((variable, f"its value has {_TOO_DEEP_TO_READ}"))
                continue
            settings.append((len(parts), variable, path, value))
        # Whole tables first, so RINGFENCE_LLM__RETRY__ATTEMPTS lands on RINGFENCE_LLM__RETRY.
        applied = []
        for _depth, variable, path, value in sorted(settings, key=lambda s: (s[0], s[1])):
            if self._set(tree, path, value, variable):
                self._origins[path] = variable
                applied.append(variable)
        return tuple(sorted(applied))

    def _env_path(self, variable: str, target: KeyPath, parts: list[str]) -> KeyPath | None:
        usage = "RINGFENCE_<NAME>__<POLICY>[__<FIELD>]"
        if not parts or not parts[0]:
            self.note((variable, f"names no policy; use {usage}"))
            return None
        policy = parts[0]
        if policy not in KEYS:
            self.note((variable, unknown(f"policy {policy!r}", policy, KEYS)))
            return None
        if len(parts) > 1:
            cls = POLICIES.get(policy)
            if cls is None:
                self.note((variable, f"{policy!r} is a flag, it has no fields"))
                return None
            fields = init_fields(cls)
            if parts[1] not in fields:
                what = f"field {parts[1]!r} of {cls.__name__}"
                self.note((variable, unknown(what, parts[1], fields)))
                return None
        if any(not part for part in parts):
            self.note((variable, f"has an empty key; use {usage}"))
            return None
        path = (*target, *parts)
        if len(path) > _MAX_DEPTH:
            self.note((variable, f"{_TOO_DEEP}, this variable names {len(path)}"))
            return None
        return path

    def _set(self, tree: dict[str, object], path: KeyPath, value: object, variable: str) -> bool:
        node = tree
        for depth, key in enumerate(path[:-1]):
            assert isinstance(key, str)  # paths built from environment names hold no indexes
            child = node.get(key)
            if isinstance(child, list):
                where = render(path[: depth + 1])
                whole = variable.rsplit("__", len(path) - depth - 1)[0]
                self.note((variable, f"{where} is an array in the file; set it whole with {whole}"))
                return False
            if child is None or child is False:
                # Absent, or `false`: a value inside it asks for the policy.
                child = node[key] = {}
            elif not isinstance(child, dict):
                where = render(path[: depth + 1])
                self.note((variable, f"{where} is not a table in the file"))
                return False
            node = child
        last = path[-1]
        assert isinstance(last, str)
        node[last] = value
        return True
