"""The live terminal view (rich)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
from rich.live import Live
from rich.table import Table

from supervisor import Supervisor

from ._scenario import PHASE_KINDS

if TYPE_CHECKING:
    from ._result import DemoResult
    from ._server import FlakyLLMServer

__all__ = ("live_view",)

_STATE_STYLE = {"closed": "green", "open": "bold red", "half_open": "yellow", "isolated": "red"}


def _render(
    supervisor: Supervisor, server: FlakyLLMServer, result: DemoResult, elapsed: float
) -> Table:
    status = supervisor.status("llm")
    phase = server.phase_now()
    recent = sum(1 for o in result.outcomes if o.end >= elapsed - 1.0)
    table = Table(title=f"ringfence demo — {elapsed:5.1f}s", show_header=False, min_width=60)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("server phase", f"{phase} ({PHASE_KINDS[phase]})")
    state = status.state.value
    table.add_row("breaker", f"[{_STATE_STYLE[state]}]{state}[/]")
    if status.paused_until is not None:
        pause = f"[bold magenta]paused[/], {status.pause_remaining:.2f}s left (a 429's Retry-After)"
    else:
        pause = "[green]not paused[/]"
    table.add_row("admissions", pause)
    table.add_row("in flight / queued (now)", f"{status.in_flight} / {status.queued}")
    table.add_row("calls/s (rate, last second)", str(recent))
    table.add_row("successes (total)", str(result.count("success")))
    table.add_row("retries (total)", str(status.retries))
    table.add_row("fallbacks (total)", str(result.count("fallback")))
    rejected_by = ", ".join(f"{k} {v}" for k, v in status.rejected_by.items())
    table.add_row(
        "attempts turned away (total)",
        f"{status.rejected} ({rejected_by})" if rejected_by else "0",
    )
    table.add_row("pauses (total)", str(len(result.paused_spans())))
    table.add_row("errors reaching callers (total)", str(result.count("error")))
    if result.streamed:
        table.add_row("  of which mid-stream (total)", str(len(result.failed_mid_stream())))
        left = " / ".join(f"{units:.0f}" for units in status.rate_limit)
        table.add_row("requests / tokens left now", left)
        table.add_row("429s over the quota: answered", str(server.quota_429s))
        table.add_row(
            "  avoided so far",
            str(max(0, result.offered_over_quota() - server.quota_429s)),
        )
    table.add_row("current break duration", f"{status.break_duration or 0:.2f}s")
    return table


async def live_view(
    supervisor: Supervisor,
    server: FlakyLLMServer,
    result: DemoResult,
    started: float,
    stop_at: float,
) -> None:
    with Live(
        _render(supervisor, server, result, 0.0), refresh_per_second=8, transient=False
    ) as live:
        while time.monotonic() < stop_at:
            await anyio.sleep(0.125)
            live.update(_render(supervisor, server, result, time.monotonic() - started))
