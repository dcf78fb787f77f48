"""
The demo's ``llm`` scenario: a real streaming server on loopback (server-sent events) with a
provider's request and token limits, and clients streaming through ``supervisor.stream`` under
their own, lower limits.

Real time is unavoidable here (a real server in a thread); the tests assert what happened,
never how fast.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from policies import ErrorKind, classify, retry_after
from supervisor._demo import DemoConfig, DemoResult, run_demo
from supervisor._demo._report import summary_table
from supervisor._demo._run import Outcome
from supervisor._demo._scenario import SCENARIOS, Schedule, _schedule
from supervisor._demo._server import FlakyLLMServer, Quota, QuotaLimiter, price

QUOTA = Quota(rpm=600, tpm=40_000)
Serve = Callable[..., FlakyLLMServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start servers with ``serve(schedule, quota=...)``; every one is stopped at the end."""
    started: list[FlakyLLMServer] = []

    def start(schedule: Schedule, quota: Quota | None = QUOTA) -> FlakyLLMServer:
        server = FlakyLLMServer(schedule, duration=600.0, seed=5, quota=quota)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a server-sent-events answer, in order."""
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_a_stream_sends_tokens_then_done(serve: Serve) -> None:
    """In a normal phase the answer is tokens as server-sent events, then [DONE]."""
    server = serve(_schedule(("normal", 1.0)))
    with (
        httpx.Client(timeout=10.0) as http,
        http.stream("POST", server.stream_url, json={"prompt": "a b c", "max_tokens": 8}) as r,
    ):
        events = _events(r)
    assert 200 == r.status_code
    assert "text/event-stream" in r.headers["content-type"]
    assert "[DONE]" == events[-1]
    tokens = [json.loads(e)["token"] for e in events[:-1]]
    assert 4 <= len(tokens) <= 8  # at least half of max_tokens, at most all
    assert {"done": 1} == server.streams
    assert server.limiter is not None
    assert (1, 0) == (server.limiter.admitted, server.limiter.refused)


def test_over_the_quota_is_a_429_with_retry_after_and_costs_nothing(
    serve: Serve,
) -> None:
    """A request over the token quota gets a 429 the classifier reads; it is not charged."""
    # 90 tokens a minute with a 2 s burst: 3 tokens at once, one request's price here.
    server = serve(_schedule(("normal", 1.0)), Quota(rpm=600, tpm=90))
    body = {"prompt": "a", "max_tokens": 2}
    with httpx.Client(timeout=10.0) as http:
        assert 200 == http.post(server.stream_url, json=body).status_code
        response = http.post(server.stream_url, json=body)
    assert 429 == response.status_code
    error = httpx.HTTPStatusError("429", request=response.request, response=response)
    assert ErrorKind.RATE_LIMITED == classify(error)
    assert retry_after(error, now=0.0) is not None
    assert 1 == server.quota_429s
    assert {200: 1, 429: 1} == server.answers
    assert server.limiter is not None
    assert (1, 1) == (server.limiter.admitted, server.limiter.refused)


def test_the_quota_limiter_refuses_past_the_burst_and_charges_only_what_went() -> None:
    """Both limits must admit; a refusal charges neither, and says how long to wait."""
    limiter = QuotaLimiter(Quota(rpm=60, tpm=600, burst_seconds=2.0))  # 2 requests, 20 tokens
    assert 0.0 == limiter.admit(0.0, 10)
    assert 0.0 == limiter.admit(0.0, 10)
    wait = limiter.admit(0.0, 1)  # the third request: over the request limit
    assert 0.0 < wait <= 1.0
    assert 0.0 < limiter.admit(1.0, 15)  # one request back, but 10 tokens are not 15
    assert 0.0 == limiter.admit(1.0, 10)  # what the refusals did not take is still there
    assert (3, 2) == (limiter.admitted, limiter.refused)


def test_price_is_prompt_words_plus_max_tokens() -> None:
    """The token price the server charges, and the clients estimate with."""
    assert 3 + 64 == price("three word prompt", 64)


def test_the_schedule_plans_slow_first_tokens_and_breaks_but_only_in_their_phases() -> None:
    """slow_first plans first tokens past 1.5 s, disconnects plans cuts and stalls after a token."""
    server = FlakyLLMServer(_schedule(("normal", 1.0)), duration=600.0, seed=5)
    try:
        normal = [server.plan("normal", 32) for _ in range(200)]
        slow = [server.plan("slow_first", 32) for _ in range(200)]
        broken = [server.plan("disconnects", 32) for _ in range(200)]
    finally:
        server.stop()
    assert all(p.first < 0.3 and p.cut_at is None for p in normal)
    assert any(p.first >= 1.5 for p in slow)
    assert any(p.first < 0.3 for p in slow)
    assert all(p.cut_at is None for p in slow)
    cuts = [p for p in broken if p.cut_at is not None]
    assert {True, False} == {p.stall for p in cuts}
    assert all(1 <= p.cut_at < p.count for p in cuts)  # type: ignore[operator]
    assert len(cuts) < len(broken)


def test_a_disconnect_breaks_the_stream_after_its_first_tokens(
    serve: Serve,
) -> None:
    """A cut answer ends with httpx's RemoteProtocolError after a token, a stall goes silent."""
    server = serve(_schedule(("disconnects", 1.0)))
    outcomes: dict[str, int] = {}
    with httpx.Client(timeout=httpx.Timeout(10.0, read=0.5)) as http:
        for _ in range(40):
            tokens = 0
            try:
                with http.stream(
                    "POST", server.stream_url, json={"prompt": "a", "max_tokens": 8}
                ) as r:
                    for line in r.iter_lines():
                        tokens += line.startswith('data: {"token"')
            except httpx.RemoteProtocolError:
                outcomes["cut"] = outcomes.get("cut", 0) + 1
                assert tokens >= 1
            except httpx.ReadTimeout:
                outcomes["stalled"] = outcomes.get("stalled", 0) + 1
                assert tokens >= 1
            else:
                outcomes["done"] = outcomes.get("done", 0) + 1
            if len(outcomes) == 3:
                break
    assert {"cut", "stalled", "done"} == set(outcomes)


def test_the_llm_scenario_has_every_fault_phase() -> None:
    """Normal, slow first tokens, a 429 spell, disconnects, an outage, then recovery."""
    kinds = [p.kind for p in SCENARIOS["llm"].phases]
    assert ["normal", "slow_first", "rate_limited", "disconnects", "outage", "normal"] == kinds


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def llm_run(request: pytest.FixtureRequest) -> DemoResult:
    """One short run of the llm scenario per backend, shared by the tests below."""
    return run_demo(
        DemoConfig(
            duration=8.0, clients=12, seed=3, scenario="llm", backend=request.param, live=False
        ),
        out=io.StringIO(),
    )


def test_every_stream_is_accounted_for_and_no_slot_leaks(llm_run: DemoResult) -> None:
    """Each stream asked for ended ok, with the fallback or failed; in_flight and queued end at 0."""
    result = llm_run
    assert result.streamed
    assert result.issued == len(result.outcomes)
    assert result.issued == sum(result.count(kind) for kind in ("success", "fallback", "error"))
    assert result.count("success") > 0
    assert (0, 0) == (result.in_flight_at_end, result.queued_at_end)
    assert 0 == result.events_dropped


def test_retries_come_before_the_first_token_and_mid_stream_errors_pass_through(
    llm_run: DemoResult,
) -> None:
    """One request per attempt; a stream broken off after a token fails with its own error."""
    result = llm_run
    # Every request the server saw was one attempt of one stream: nothing was sent again
    # after a first token. A hedge that lost before its request reached the server is an
    # attempt the server never saw: only those may be missing there.
    attempts, requests = (
        sum(o.attempts for o in result.outcomes),
        sum(result.server_requests.values()),
    )
    assert requests <= attempts <= requests + result.hedges
    # Failures after the first token reached the caller as what they were, never as a
    # fallback: the server's dropped connection (httpx's own error), a stalled answer
    # (between_items), or the total deadline.
    mid = result.failed_mid_stream()
    assert {o.cause for o in mid} <= {"RemoteProtocolError", "AttemptTimeout", "DeadlineExceeded"}
    broken_off = result.server_streams.get("cut", 0) + result.server_streams.get("stalled", 0)
    assert (broken_off > 0) == (len(mid) > 0), (result.server_streams, mid)
    # Errors before the first token all went to the fallback.
    assert [] == [o for o in result.outcomes if o.kind == "error" and not o.mid_stream]


def test_the_client_limits_keep_requests_under_the_server_quota(llm_run: DemoResult) -> None:
    """No request reached the server over its quota; 'avoided' is the shadow's count."""
    result = llm_run
    assert 0 == result.quota_429s, result.quota_429_at
    assert result.offered_over_quota() == result.limit_429s_avoided()
    # The quota's 429s count as refusals of offers, each at most once.
    assert result.offered_over_quota() <= result.issued


def test_stream_figures_and_the_summary_from_outcomes() -> None:
    """TTFT counts from asking, over server answers; retried, mid-stream and avoided as defined."""
    result = DemoResult(
        config=DemoConfig(scenario="llm", live=False),
        streamed=True,
        issued=4,
        hedges=3,
        hedge_wins=1,
        outcomes=[
            # asked at 1.0, sent at 1.5 (a turn), first token at 2.0, after 2 attempts
            Outcome(1.0, 3.0, "success", "", first_token=2.0, tokens=9, attempts=2, sent=1.5),
            # broken off after 3 tokens: failed mid-stream, over the quota when asked for
            Outcome(
                2.0,
                2.6,
                "error",
                "RemoteProtocolError",
                first_token=2.5,
                tokens=3,
                attempts=1,
                sent=2.0,
                over_quota=True,
            ),
            # turned away by the limits: the fallback's tokens are not the server's
            Outcome(
                3.0, 3.0, "fallback", "RateLimited", first_token=3.0, tokens=8, over_quota=True
            ),
            # three slow first tokens, then the fallback
            Outcome(
                4.0,
                7.5,
                "fallback",
                "AttemptTimeout",
                first_token=7.5,
                tokens=8,
                attempts=3,
                sent=4.0,
            ),
        ],
        quota_429s=1,
        server_answers={200: 3, 429: 3},
        client_limits="540 RPM, 36,000 TPM",
        server_quota="600 RPM, 40,000 TPM",
    )
    assert 0.5 == result.ttft(0.5)  # 1.0 and 0.5: the fallbacks do not count
    assert 1.0 == result.ttft(0.95)
    assert 0.0 == result.admission_wait(0.5)
    assert 0.5 == result.admission_wait(0.95)
    assert [2, 3] == [o.attempts for o in result.retried_before_first_token()]
    assert ["RemoteProtocolError"] == [o.cause for o in result.failed_mid_stream()]
    assert 2 == result.offered_over_quota()
    assert 1 == result.limit_429s_avoided()  # 2 would-be refusals, less the 1 answered
    table = summary_table(result)
    rows = dict(zip(table.columns[0]._cells, table.columns[1]._cells, strict=True))
    assert "4 (issued 4)" == rows["streams asked for"]
    assert "1" == rows["  streamed to the end"]
    assert "2 (RateLimited 1, AttemptTimeout 1)" == rows["  answered by the fallback"]
    assert "1 (RemoteProtocolError 1)" == rows["  failed mid-stream (passed on)"]
    assert "0" == rows["  failed before their first token"]
    assert "0.50s / 1.00s" == rows["time to first token p50 / p95"]
    assert "0.00s / 0.50s" == rows["  of it, waiting to be sent"]
    assert "2 (1 then streamed)" == rows["retried or hedged before their first token"]
    assert "3 (1)" == rows["hedges (first token first)"]
    assert "1 / 1" == rows["quota 429s: answered / avoided"]
    assert "2" == rows["429s in the server's 429 spell"]
    assert table.caption is not None
    assert "a copy of the server's limiter" in str(table.caption)
