"""The public surface is pinned (httpx's test_exported_members, anyio's test_all_attributes)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

import policies
import supervisor
import supervisor.testing
from policies import backoff, break_duration

# `policies.classify` is also the name of the function the package exports: reach the module
# through importlib.
classify_module = importlib.import_module("policies.classify")
rate_limit_module = importlib.import_module("policies.rate_limit")
budget_module = importlib.import_module("policies.budget")
PUBLIC_MODULES = [
    policies,
    backoff,
    break_duration,
    classify_module,
    rate_limit_module,
    budget_module,
    supervisor,
    supervisor.testing,
]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_a_tuple_of_existing_names(module: ModuleType) -> None:
    """__all__ is a tuple and every name in it exists."""
    assert isinstance(module.__all__, tuple)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert [] == missing


@pytest.mark.parametrize(
    "module",
    [backoff, break_duration, classify_module, rate_limit_module, budget_module],
    ids=lambda m: m.__name__,
)
def test_public_definitions_are_exported(module: ModuleType) -> None:
    """Every public class and function defined in a public module is in its __all__."""
    defined = {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }
    assert defined <= set(module.__all__)


def test_supervisor_exports_claim_the_package_as_their_module() -> None:
    """Exported objects show `supervisor.X` in reprs and tracebacks."""
    wrong = [n for n in supervisor.__all__ if getattr(supervisor, n).__module__ != "supervisor"]
    assert [] == wrong


def test_supervisor_implementation_modules_are_private() -> None:
    """Every supervisor module but __init__/__main__ and the testing helpers (issue 21: a
    service's tests import supervisor.testing; pytest loads supervisor.pytest_plugin) starts
    with an underscore."""
    root = Path(supervisor.__file__).parent
    allowed = ("__init__.py", "__main__.py", "testing.py", "pytest_plugin.py")
    public = [
        p.name for p in root.glob("*.py") if not p.name.startswith("_") and p.name not in allowed
    ]
    assert [] == public


@pytest.mark.parametrize("package", [policies, supervisor], ids=lambda m: m.__name__)
def test_packages_ship_py_typed(package: ModuleType) -> None:
    """Both packages are typed (PEP 561)."""
    assert (Path(package.__file__).parent / "py.typed").is_file()  # type: ignore[arg-type]
