"""`ringfence demo`: a flaky local "LLM API" and clients protected by the supervisor."""

from __future__ import annotations

from ._result import DemoConfig, DemoResult
from ._run import run_demo

__all__ = ("DemoConfig", "DemoResult", "run_demo")
