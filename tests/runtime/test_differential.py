"""
Differential test of the attempt paths (issue 16, item 2): asyncio's fast path (generated,
inlined), its template (``RINGFENCE_INLINE=0``), asyncio's general path
(``supervisor._actor.FAST_PATH = False``) and trio must agree on everything a user can see:
each call's outcome, each control operation's answer, every event, and ``status()`` after
every operation.

Hypothesis draws a dependency's policies (breaker with a slow-call limit and a break duration
that crashes the actor when armed, bulkhead, rate limit with a wait, attempt timeout, retry)
and a sequence of operations (calls that succeed or fail with a transient, an invalid-input,
a custom or a 429 error, at once or when the driver lets them; caller cancellations;
reconfigure, isolate, reset, force_half_open; time passing). One driver replays it on each
path, on virtual time (trio's MockClock, and an asyncio loop that jumps the same way), and
orders every interleaving itself: see ``_diff_driver.py``.

``RINGFENCE_DIFF_EXAMPLES`` sets the number of examples (default 100); the seed is fixed
(``derandomize``), so a CI run is repeatable; ``RINGFENCE_DIFF_RANDOM=1`` explores instead.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ._diff_driver import (
    Advance,
    ArmCrash,
    Call,
    Cancel,
    Config,
    ForceHalfOpen,
    Isolate,
    Op,
    Reconfigure,
    Release,
    Relimit,
    Reset,
    Resize,
    compare_paths,
)

EXAMPLES = int(os.environ.get("RINGFENCE_DIFF_EXAMPLES", "100"))
DERANDOMIZE = os.environ.get("RINGFENCE_DIFF_RANDOM", "0") != "1"


def test_a_breaker_swapped_during_a_rate_limit_wait_closes_on_every_path() -> None:
    """
    The first known drift: the fast path bound ``machine = self._machine`` before admission;
    the call waited for its rate-limit turn, meanwhile the breaker was replaced and forced
    half-open; the call, admitted as the NEW breaker's probe, reported its success to the old
    one. The new breaker stayed half-open for good (its probe permit never came back) and
    refused every later call. On the general path and on trio the probe closes it.
    """
    config = Config(threshold=5, rate=(0.25, 4.0))
    compare_paths(
        config,
        [
            Call("ok"),  # takes the only token
            Call("ok"),  # waits 0.25 s for its turn
            Reconfigure(),  # a new breaker...
            ForceHalfOpen(),  # ...half-open: the waiting call will be its probe
            Advance(1.0),  # the turn: the probe succeeds, the breaker closes
            Call("ok"),  # admitted (refused as half_open on the drifted fast path)
        ],
    )


def test_every_bulkhead_full_spell_publishes_its_rejection_on_every_path() -> None:
    """
    The second known drift: the inlined slot release did not end the bulkhead-full spell
    (``_bulkhead_full_logged``), so after a success-only spell the next full bulkhead
    rejected calls without a ``CallRejected(bulkhead_full)`` event (``rejected_by`` still
    counted them).
    """
    config = Config(bulkhead=(1, 0))
    compare_paths(
        config,
        [
            Call("ok", hold=True),  # takes the only slot
            Call("ok"),  # BulkheadFull, and its event
            Release(0),  # the slot is free: the spell is over
            Call("ok", hold=True),
            Call("ok"),  # a second spell: BulkheadFull, and its event again
        ],
    )


def test_a_call_in_flight_across_a_breaker_swap_reports_to_the_breaker_in_force() -> None:
    """
    Found by the random sequences: a call admitted as the probe of a half-open breaker is
    still running when ``reconfigure(breaker=...)`` swaps the breaker. Its success is a late
    outcome for the new breaker (whose epochs continue the old one's), so the general path
    and trio ignore it. The fast path reported it to the breaker it was admitted by: the
    replaced breaker "closed", publishing a ``BreakerTransition(half_open -> closed)`` and
    counting it in ``status().transitions_total``, for a breaker that guards nothing.
    """
    compare_paths(
        Config(),
        [
            ForceHalfOpen(),
            Call("ok", hold=True),  # the probe, running
            Reconfigure(),  # a new, closed breaker
            Release(0),  # the probe succeeds: a late outcome
        ],
    )


# -- random sequences --------------------------------------------------------------------------

configs = st.builds(
    Config,
    threshold=st.sampled_from([2, 1, 3]),
    slow_call=st.sampled_from([None, 0.5]),
    break_s=st.sampled_from([2.0, 8.0]),
    bulkhead=st.sampled_from([None, (1, 0), (1, 1), (2, 0), (2, 1)]),
    rate=st.sampled_from([None, (0.5, 2.0), None, (0.25, 0.0), None, (1.0, 8.0)]),
    attempt=st.sampled_from([None, None, None, None, None, 0.75]),
    pause=st.sampled_from([0.5, 3.0]),
    retry=st.sampled_from([None, None, 2, 3]),
    fallback=st.sampled_from([False, False, True]),
)

_calls = st.builds(
    Call,
    then=st.sampled_from(["ok", "transient", "ok", "invalid", "custom", "ok", "r429"]),
    hold=st.sampled_from([True, False, True]),  # mostly held: calls overlap, slots fill
)
_release = st.builds(Release, k=st.integers(0, 2))
_advance = st.builds(Advance, dt=st.sampled_from([1.0, 0.25, 1 / 64, 4.0]))
_cancel = st.builds(Cancel, k=st.integers(0, 2))
_controls: tuple[Op, ...] = (Reconfigure(), ForceHalfOpen(), Reset(), Isolate(), ArmCrash())
_reshapes: tuple[Op, ...] = (
    Resize((1, 0)),
    Resize((2, 1)),
    Resize(None),
    Relimit((0.5, 2.0)),
    Relimit(None),
)


@st.composite
def operation_lists(draw: st.DrawFn) -> list[Op]:
    """
    Calls (most operations: they overlap and fill the bulkhead), releases, time passing, and
    what this example enables of cancellations and control operations: swarm testing, so a
    rare combination (a new breaker forced half-open while a call waits for its turn) is far
    likelier among a few kinds than among all of them at once.
    """
    controls = [op for op in _controls if draw(st.booleans())]
    if Isolate() in controls and Reset() not in controls:
        controls.append(Reset())  # isolated for good, an example would test nothing more
    branches: list[st.SearchStrategy[Op]] = [_calls] * 4 + [_release] * 2 + [_advance]
    if draw(st.booleans()):
        branches.append(_cancel)
    if controls:
        branches.append(st.sampled_from(controls))
    if draw(st.booleans()):
        branches.append(st.sampled_from(_reshapes))  # reconfigure(bulkhead=/rate_limit=)
    operation: st.SearchStrategy[Op] = st.one_of(branches)
    # Runs of operations, joined: longer sequences than one list's average of six.
    runs = draw(st.lists(st.lists(operation, min_size=1, max_size=10), min_size=1, max_size=6))
    return [op for run in runs for op in run]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(config=configs, ops=operation_lists())
def test_the_fast_path_the_general_path_and_trio_agree(config: Config, ops: list[Op]) -> None:
    """Every operation's outcome, every event and status() after each, on the three paths."""
    on_trio = compare_paths(config, ops)
    if on_trio.first_tie is not None:
        event("trio compared up to a timer tie")
