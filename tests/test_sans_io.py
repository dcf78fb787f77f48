"""policies/ is sans-I/O: no runtime imports, no clocks, no global random (also ruff TID251)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import policies

FORBIDDEN_MODULES = {"anyio", "trio", "asyncio", "supervisor", "time", "threading"}
FORBIDDEN_RANDOM = {"random", "uniform", "randint", "choice", "gauss", "seed", "shuffle"}
FILES = sorted(Path(policies.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_policy_module_is_sans_io(path: Path) -> None:
    """No import of a runtime or clock module; `random` only for the Random type."""
    tree = ast.parse(path.read_text())
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                problems.append(node.module)
            if node.module == "random":
                problems += [a.name for a in node.names if a.name in FORBIDDEN_RANDOM]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr in FORBIDDEN_RANDOM
        ):
            problems.append(f"random.{node.attr}")
    assert [] == problems
    assert FILES  # the glob found the package
