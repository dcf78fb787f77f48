"""Seeded fault schedules for the demo server, as fractions of the run's duration."""

from __future__ import annotations

from typing import Final, final

import attrs

__all__ = ("PHASE_KINDS", "SCENARIOS", "STREAMED", "Phase", "Schedule")

#: What the server does in each kind of phase.
PHASE_KINDS: Final = {
    "normal": "answers, 40-120 ms",
    "errors": "a burst of 5xx (60% of requests)",
    "rate_limited": "429s: Retry-After 0.2-0.6 s, or the end of the spell",
    "outage": "every request fails with 503",
    "slow": "answers after 1.2-2.5 s",
    # streamed answers (the llm scenario's POST /v1/stream)
    "slow_first": "35% of streams send their first token after 1.5-3 s",
    "disconnects": "30% of streams break off mid-answer: cut, or stalled",
}


@final
@attrs.frozen
class Phase:
    kind: str
    start: float  # fraction of the duration
    end: float


@final
@attrs.frozen
class Schedule:
    phases: tuple[Phase, ...]

    def at(self, fraction: float) -> Phase:
        for phase in self.phases:
            if phase.start <= fraction < phase.end:
                return phase
        return self.phases[-1]

    def seconds(self, duration: float) -> list[tuple[str, float, float]]:
        return [(p.kind, p.start * duration, p.end * duration) for p in self.phases]


def _schedule(*spans: tuple[str, float]) -> Schedule:
    phases = []
    start = 0.0
    for kind, length in spans:
        phases.append(Phase(kind, start, start + length))
        start += length
    assert abs(start - 1.0) < 1e-9
    return Schedule(tuple(phases))


SCENARIOS: Final = {
    # Streamed answers under a provider's request and token limits (the clients' own limits
    # are set below them): slow first tokens, a 429 spell with Retry-After, answers breaking
    # off mid-stream, a short outage, recovery.
    "llm": _schedule(
        ("normal", 0.15),
        ("slow_first", 0.15),
        ("rate_limited", 0.12),
        ("disconnects", 0.15),
        ("outage", 0.13),
        ("normal", 0.30),
    ),
    # Every phase, in the order the issue lists them: normal, 5xx burst, 429s, outage, slow,
    # recovery.
    "outage": _schedule(
        ("normal", 0.15),
        ("errors", 0.12),
        ("rate_limited", 0.12),
        ("outage", 0.22),
        ("slow", 0.14),
        ("normal", 0.25),
    ),
    "flaky": _schedule(
        ("normal", 0.15),
        ("errors", 0.2),
        ("normal", 0.15),
        ("errors", 0.2),
        ("slow", 0.1),
        ("normal", 0.2),
    ),
    "rate-limited": _schedule(
        ("normal", 0.2),
        ("rate_limited", 0.3),
        ("normal", 0.15),
        ("rate_limited", 0.15),
        ("normal", 0.2),
    ),
}

#: The scenarios whose clients stream their answers (``supervisor.stream``) from
#: ``POST /v1/stream`` under the provider's quota; the others await whole answers.
STREAMED: Final = frozenset({"llm"})
