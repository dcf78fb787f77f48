"""`ringfence demo`: a flaky local "LLM API" and clients protected by the supervisor."""

from __future__ import annotations

from ._run import DemoConfig, DemoResult, run_demo

__all__ = ("DemoConfig", "DemoResult", "run_demo")
