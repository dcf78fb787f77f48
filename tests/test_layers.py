"""
Imports point down: no package module imports, directly or around a circle, a module that
imports it back. Every import counts, at module level, inside a function, or under
``if TYPE_CHECKING:``: a lazy or typing-only import hides a circle from Python, not from
the design (ARCHITECTURE.md, "Checks that keep the house standing").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import supervisor


def _package_name(package_dir: Path) -> str:
    """The dotted name of *package_dir*: its name, under every enclosing package's."""
    parts = [package_dir.name]
    parent = package_dir.parent
    while (parent / "__init__.py").is_file():
        parts.append(parent.name)
        parent = parent.parent
    return ".".join(reversed(parts))


def _modules(package_dir: Path) -> dict[str, Path]:
    """
    Every module under *package_dir*, subpackages too, by dotted name (a package is its
    ``__init__.py``).
    """
    root = _package_name(package_dir)
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([root, *parts])] = path
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """
    The dotted names an import statement in *module* names: for ``from a import b, c``,
    ``a.b`` and ``a.c`` (each a module, or a name defined in ``a``) and then ``a`` itself.
    """
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        # `from .x import y` in a.b.c (a module) is a.b.x; in a.b.c/__init__.py it is a.b.c.x.
        base = module.split(".")
        if not is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return [f"{target}.{alias.name}" for alias in node.names] + [target]


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """
    The package's own import graph: each module under *package_dir* (by dotted name, a
    package by its ``__init__``) -> the modules of the same package it imports. Every
    ``import`` and ``from ... import`` statement counts wherever it is (module level, inside
    a function, under ``if TYPE_CHECKING:``); relative imports are resolved, and ``from
    pkg import name`` is an arrow to ``pkg.name`` when that is a module, else to ``pkg``.
    Imports from outside the package, and a module's imports of itself, are left out.
    """
    modules = _modules(package_dir)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        arrows = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                # one arrow per imported name: to the submodule, or to the module it is in
                targets = [name if name in modules else names[-1] for name in names[:-1]]
            else:
                targets = names
            for target in targets:
                # `import a.b.c` names a.b.c; the closest enclosing module that is ours
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    arrows.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """
    A circle in *graph*, as the modules along it with the first repeated at the end
    (``["a", "b", "a"]``: a imports b, b imports a), or None when there is none.
    Deterministic: modules and arrows are walked in sorted order.
    """
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(sorted(graph.get(start, ())))]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:  # every arrow out of path[-1] walked: no circle through it
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            pending.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _package(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    package = tmp_path / name
    for relative, text in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_import_graph_counts_lazy_typing_and_relative_imports(tmp_path: Path) -> None:
    """Function-level, TYPE_CHECKING, relative and `from pkg import module` imports are arrows."""
    package = _package(
        tmp_path,
        "pkg",
        {
            "__init__.py": "from .a import A\n",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
            "b.py": "def f():\n    from pkg import c\n    import pkg.sub.d\n",
            "c.py": "from . import a as _, b\nfrom pkg import A, sub\nimport os\n",
            "sub/__init__.py": "from ..c import x\nfrom . import d\nfrom .d import y\n",
            "sub/d.py": "from .. import b\nfrom ... import elsewhere\n",
        },
    )
    assert {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.c", "pkg.sub.d"},
        "pkg.c": {"pkg", "pkg.a", "pkg.b", "pkg.sub"},
        "pkg.sub": {"pkg.c", "pkg.sub.d"},
        "pkg.sub.d": {"pkg.b"},
    } == import_graph(package)


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, None),  # a diamond
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}, ["b", "c", "d", "b"]),
        ({"a": {"b", "c"}, "b": set(), "c": {"a"}}, ["a", "c", "a"]),
    ],
)
def test_find_cycle(graph: dict[str, set[str]], cycle: list[str] | None) -> None:
    """A circle is found and named along its arrows; a chain or a diamond is none."""
    assert cycle == find_cycle(graph)


def test_the_demo_has_no_import_circle() -> None:
    """supervisor/_demo/ imports in no circle (its shared records live in _result.py)."""
    graph = import_graph(Path(supervisor.__file__).parent / "_demo")
    assert "supervisor._demo._run" in graph  # the walk found the package
    assert None is find_cycle(graph)


# ============================================================================ the runtime's floors

#: ARCHITECTURE.md's modules table: each core module of supervisor/ and its floor. A module
#: imports only modules on lower floors (policies/ and the standard library are the ground).
#: _backends' modules sit on floor 6, ordered among themselves by the decimals.
FLOORS: dict[str, float] = {
    "_errors": 1,
    "_events": 1,
    "_timers": 1,
    "_cutoff": 1.5,  # what a cut-off wait means: its error, for calls and streams (issue 17)
    "_status": 1,
    "_testmode": 1,
    "_priority": 1,  # the caller's priority, a context variable (issue 20, part 3)  # the testing switch's state (issue 21)
    "_effective": 4,  # `ringfence config`: the effective configuration as TOML (issue 21)
    "_runtime": 2,
    "_spec": 2,
    "_ledger": 2,  # the actor's lifetime counts and crash record (issue 17)
    "_holders": 1,  # the streams holding a slot, owned by their actor (issue 17)
    "_teller": 2,  # what an actor tells the event hub, throttled (issue 17)
    "_rate_limits": 3,
    "_config_source": 2.5,
    "_chaos": 3,
    "_gates": 3,  # a dependency's pause and shared verdict, owned by its actor (issue 17)
    "_waiters": 3,  # the calls queued for a slot and how they wake, owned by its actor (issue 17)
    # a hedged dependency's delay, hedge counts and whether one may start (rate limits,
    # budget), owned by its actor (issue 17)
    "_hedging": 3.5,
    "_config": 3,
    "_actor": 4,
    "_call": 5,
    "_admission": 5,
    "_stream": 6,
    "_backends._threads": 6,
    "_backends._asyncio_general": 6.1,
    "_backends._asyncio": 6.2,
    "_backends._generated_asyncio": 6.2,
    "_backends._trio_general": 6.1,
    "_backends._trio": 6.2,
    "_backends._generated_trio": 6.2,
    "_backends": 6.3,
    "_backends._generate": 6.3,
    "_handle": 6.5,  # Dependency and Protect: the handles a registration gives out (issue 17)
    "_supervisor": 7,
    "testing": 8,  # the testing helpers and pytest plugin (issue 21)
    "pytest_plugin": 9,
}


def _core(module: str) -> str | None:
    """*module*'s key in FLOORS (``supervisor._actor`` -> ``_actor``), or None."""
    if not module.startswith("supervisor."):
        return None
    name = module.removeprefix("supervisor.")
    return name if name in FLOORS else None


def test_every_core_module_has_a_floor() -> None:
    """A new module of the runtime gets its place in the table (and in ARCHITECTURE.md)."""
    graph = import_graph(Path(supervisor.__file__).parent)
    outside = ("supervisor", "supervisor.__main__")
    unplaced = [
        m
        for m in graph
        if m not in outside
        and not m.startswith(("supervisor._demo", "supervisor.integrations"))
        and _core(m) is None
    ]
    assert unplaced == []


def test_the_runtime_imports_only_down() -> None:
    """No core module imports one on its own floor or above: imports point down, so no circle."""
    graph = import_graph(Path(supervisor.__file__).parent)
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        if (here := _core(source)) is not None
        for target in targets
        if (there := _core(target)) is None or FLOORS[there] >= FLOORS[here]
        if target.startswith("supervisor.")
    )
    assert upward == []


def test_supervisor_has_no_import_circle() -> None:
    """The whole package: the runtime, the integrations, the demo and the CLI."""
    assert find_cycle(import_graph(Path(supervisor.__file__).parent)) is None


#: The actor's mailbox: its only methods that await (ARCHITECTURE.md, rule 2).
MAILBOX = {"serve", "control"}


def test_the_actor_awaits_only_in_its_mailbox() -> None:
    """Everything that awaits lives above the actor; its handlers are synchronous."""
    source = (Path(supervisor.__file__).parent / "_actor.py").read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in MAILBOX:
            found += [
                f"{node.name}, line {inner.lineno}"
                for inner in ast.walk(node)
                if isinstance(inner, ast.Await | ast.AsyncFor | ast.AsyncWith)
            ]
    assert found == []


#: What changes a breaker machine (``policies.breaker.CircuitBreaker``): a permit taken or
#: given back, an outcome. Only the actor's handlers call these (ARCHITECTURE.md, rule 1);
#: the generated attempts hold copies of the handlers' bodies.
MACHINE_WRITES = {"acquire", "on_success", "on_outcome", "on_cancel"}


def test_only_the_actor_writes_the_breaker_machine() -> None:
    """Admission, streams, backends and integrations give permits back and report outcomes
    through the actor's handlers, never by calling the machine themselves."""
    root = Path(supervisor.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "_actor.py" or path.name.startswith("_generated"):
            continue
        found += [
            f"{path.relative_to(root)}:{node.lineno} .{node.func.attr}()"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MACHINE_WRITES
        ]
    assert found == []
