"""The summary table and the timeline plot."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ._result import DemoResult

__all__ = ("plot_timeline", "summary_table")


def _counts(counts: Mapping[Any, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}s"


#: Under the llm summary: how the "avoided" figure is derived.
AVOIDED_NOTE: Final = (
    "quota 429s avoided: the requests the server's quota would have refused had each gone"
    " the moment its client asked for it (a copy of the server's limiter, fed those"
    " moments), less the quota 429s the server did answer. A lower bound: without the"
    " client limits, each of those 429s would have been retried. Time to first token counts"
    " from that moment too, over the streams the server answered."
)


def summary_table(result: DemoResult) -> Table:
    """Everything the run observed; every figure is a total over the run unless it says not."""
    title = f"ringfence demo summary ({result.config.scenario}, {result.elapsed:.1f}s)"
    if result.streamed:
        return _stream_table(Table(title=title, caption=AVOIDED_NOTE), result)
    table = Table(title=title)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    calls = len(result.outcomes)
    table.add_row("client calls", f"{calls} (issued {result.issued})")
    table.add_row("successes", str(result.count("success")))
    fallbacks = result.causes("fallback")
    detail = _counts(dict(fallbacks.most_common()))
    table.add_row("fallbacks", f"{result.count('fallback')} ({detail})" if detail else "0")
    errors = result.causes("error")
    table.add_row(
        "errors reaching callers",
        str(sum(errors.values())) + (f" ({_counts(errors)})" if errors else ""),
    )
    rejected = result.rejected_by
    table.add_row(
        "attempts ringfence turned away",
        f"{sum(rejected.values())} ({_counts(rejected)})" if rejected else "0",
    )
    table.add_row("retries", str(result.retries))
    for q in (0.50, 0.95, 0.99):
        table.add_row(f"latency p{int(q * 100)}", f"{result.latency(q) * 1000:.0f} ms")
    for state, seconds in sorted(result.time_in_states().items()):
        table.add_row(f"time {state}", f"{seconds:.1f}s")
    table.add_row(
        "pauses (a 429's Retry-After)",
        f"{len(result.paused_spans())} ({result.time_paused():.1f}s in all)",
    )
    table.add_row("429s that set or extended a pause", str(len(result.pauses)))
    table.add_row("calls the pause kept from the server", str(result.kept_by_pause()))
    table.add_row("  turned away at once (RateLimited)", str(result.rejected_by_pause()))
    table.add_row("  held until the pause ended", str(result.waited_for_pause()))
    table.add_row("calls the open breaker kept from the server", str(result.kept_away()))
    table.add_row(
        "requests that reached the server",
        f"{sum(result.server_requests.values())} ({_counts(result.server_requests)})",
    )
    table.add_row(
        "server answers by HTTP status",
        _counts(result.server_answers) if result.server_answers else "0",
    )
    if result.events_dropped:
        table.add_row("events the demo missed (slow reader)", str(result.events_dropped))
    return table


def _stream_table(table: Table, result: DemoResult) -> Table:
    """The llm scenario's summary: streams, their first tokens, the limits and the 429s."""
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    mid = result.failed_mid_stream()
    before = [o for o in result.outcomes if o.kind == "error" and not o.mid_stream]
    fallbacks = result.causes("fallback")
    table.add_row("streams asked for", f"{len(result.outcomes)} (issued {result.issued})")
    table.add_row("  streamed to the end", str(result.count("success")))
    table.add_row(
        "  answered by the fallback",
        f"{result.count('fallback')}"
        + (f" ({_counts(dict(fallbacks.most_common()))})" if fallbacks else ""),
    )
    table.add_row(
        "  failed mid-stream (passed on)",
        f"{len(mid)}" + (f" ({_counts(Counter(o.cause for o in mid))})" if mid else ""),
    )
    table.add_row("  failed before their first token", str(len(before)))
    table.add_row(
        "time to first token p50 / p95",
        f"{_seconds(result.ttft(0.5))} / {_seconds(result.ttft(0.95))}",
    )
    table.add_row(
        "  of it, waiting to be sent",
        f"{_seconds(result.admission_wait(0.5))} / {_seconds(result.admission_wait(0.95))}",
    )
    retried = result.retried_before_first_token()
    then_ok = sum(1 for o in retried if o.kind == "success")
    table.add_row(
        "retried or hedged before their first token", f"{len(retried)} ({then_ok} then streamed)"
    )
    table.add_row("retries", str(result.retries))
    table.add_row("hedges (first token first)", f"{result.hedges} ({result.hedge_wins})")
    table.add_row("client limits", result.client_limits)
    table.add_row("server's quota", result.server_quota)
    table.add_row(
        "  turned away at once (RateLimited)", str(result.rejected_by.get("rate_limited", 0))
    )
    table.add_row(
        "quota 429s: answered / avoided",
        f"{result.quota_429s} / {result.limit_429s_avoided()}",
    )
    table.add_row(
        "429s in the server's 429 spell",
        str(result.server_answers.get(429, 0) - result.quota_429s),
    )
    table.add_row(
        "pauses (a 429's Retry-After)",
        f"{len(result.paused_spans())} ({result.time_paused():.1f}s in all)",
    )
    table.add_row(
        "calls the pause kept from the server",
        f"{result.kept_by_pause()} (turned away {result.rejected_by_pause()},"
        f" held {result.waited_for_pause()})",
    )
    table.add_row("calls the open breaker kept away", str(result.kept_away()))
    states = sorted(result.time_in_states().items())
    table.add_row(
        "time " + " / ".join(state for state, _ in states),
        " / ".join(f"{seconds:.1f}s" for _, seconds in states),
    )
    table.add_row(
        "requests that reached the server",
        f"{sum(result.server_requests.values())} ({_counts(result.server_requests)})",
    )
    table.add_row(
        "server answers by HTTP status",
        _counts(result.server_answers) if result.server_answers else "0",
    )
    table.add_row("server's streams", _counts(result.server_streams) or "0")
    if result.events_dropped:
        table.add_row("events the demo missed (slow reader)", str(result.events_dropped))
    return table


def print_summary(result: DemoResult, console: Console) -> None:
    console.print(summary_table(result))


_STATE_COLOURS = {
    "closed": "#d9f2d9",
    "half_open": "#fff2b3",
    "open": "#f7c6c6",
    "isolated": "#e0a0a0",
}
_PAUSE_COLOUR = "#6a3fb0"
_PHASE_COLOURS = {
    "normal": "#8fd18f",
    "errors": "#f0a050",
    "rate_limited": "#c0a0f0",
    "outage": "#e05050",
    "slow": "#70a0e0",
    "slow_first": "#70a0e0",
    "disconnects": "#e08080",
}


def plot_timeline(result: DemoResult, path: Path) -> Path:
    """Outcomes per second, breaker-state bands, the fault schedule and the pauses, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    seconds = max(1, int(result.elapsed) + 1)
    kinds = ("success", "fallback", "error")
    series = {k: [0] * seconds for k in kinds}
    for outcome in result.outcomes:
        index = min(seconds - 1, int(outcome.end))
        series[outcome.kind][index] += 1
    fig, (ax, lane) = plt.subplots(
        2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [5, 1]}
    )
    # breaker-state bands behind the outcomes
    for (t0, state, *_), (t1, *_) in zip(result.states, result.states[1:], strict=False):
        ax.axvspan(t0, t1, color=_STATE_COLOURS.get(state, "white"), linewidth=0)
    x = [s + 0.5 for s in range(seconds)]
    ax.plot(x, series["success"], color="#1a7f37", marker="o", ms=3, label="successes / s")
    ax.plot(x, series["fallback"], color="#9a6700", marker="s", ms=3, label="fallbacks / s")
    errors = "errors / s (failed mid-stream)" if result.streamed else "errors / s"
    ax.plot(x, series["error"], color="#cf222e", marker="x", ms=4, label=errors)
    ax.set_ylabel("client calls per second")
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=c, label=f"breaker {s}") for s, c in _STATE_COLOURS.items() if s != "isolated"
    ]
    handles.append(Patch(color=_PAUSE_COLOUR, label="paused by a 429's Retry-After"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, ncol=2)
    ax.set_title(
        f"ringfence demo: {result.config.scenario} scenario, {result.config.clients} clients"
    )
    # the server's phases above, the dependency's pauses (ringfence's side) in a strip below
    for kind, t0, t1 in result.phases:
        lane.axvspan(t0, t1, ymin=0.3, color=_PHASE_COLOURS.get(kind, "grey"))
        lane.text((t0 + t1) / 2, 0.65, kind.replace("_", " "), ha="center", va="center", fontsize=8)
    for t0, t1 in result.paused_spans():
        lane.axvspan(t0, t1, ymax=0.25, color=_PAUSE_COLOUR)
    if result.quota_429_at:  # the llm scenario: 429s the server answered over its quota
        for t in result.quota_429_at:
            lane.axvline(t, ymax=0.25, color="black", linewidth=1)
        handles.append(Patch(color="black", label="429 over the server's quota"))
        ax.legend(handles=handles, loc="upper left", fontsize=8, ncol=2)
    lane.set_yticks([])
    lane.set_ylabel("server")
    lane.set_xlabel("seconds")
    lane.set_xlim(0, max(result.elapsed, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
