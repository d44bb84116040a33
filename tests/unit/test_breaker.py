"""The per-tier circuit breaker: its state machine on an injected clock, and what the cascade does while it is open."""

from __future__ import annotations

import dataclasses

import pytest

from services.core.errors import InvalidRequest, NatsUnavailable, TierUnavailable
from services.gateway.breaker import Breaker, State, TierDown, counts_against_tier
from services.gateway.domain import Reason
from tests.unit.cascade_fakes import Answer, Router, Tiers, make, request, run


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, failures: int = 3, open_s: float = 10.0) -> Breaker:
    return Breaker("large", failures=failures, open_s=open_s, clock=clock)


def test_opens_after_failures_in_a_row_only():
    b = breaker(Clock())
    b.failed("a")
    b.failed("b")
    b.succeeded()  # a success in between: the count starts again
    b.failed("c")
    b.failed("d")
    assert b.state is State.CLOSED and b.enter("e")
    b.failed("e")
    assert b.state is State.OPEN
    assert not b.enter("f")


def test_half_opens_after_the_cool_down_with_one_probe():
    clock = Clock()
    b = breaker(clock, failures=1)
    b.failed("a")
    clock.now += 9.9
    assert b.state is State.OPEN and not b.enter("b")
    clock.now += 0.1
    assert b.state is State.HALF_OPEN
    assert b.enter("probe")
    assert b.enter("probe")  # the same request asking again keeps its probe
    assert not b.enter("other")  # one probe at a time
    b.succeeded()
    assert b.state is State.CLOSED and b.enter("other")


def test_a_failed_probe_opens_it_for_another_cool_down():
    clock = Clock()
    b = breaker(clock, failures=1)
    b.failed("a")
    clock.now += 10
    assert b.enter("probe")
    b.failed("probe")
    assert b.state is State.OPEN and b.retry_in_s() == pytest.approx(10)
    clock.now += 10
    assert b.enter("next")


def test_a_probe_released_without_a_verdict_goes_to_the_next_request():
    clock = Clock()
    b = breaker(clock, failures=1)
    b.failed("a")
    clock.now += 10
    assert b.enter("probe")
    b.released("probe")  # cancelled: says nothing about the tier
    assert b.state is State.HALF_OPEN and b.enter("next")


def test_a_probe_never_reported_is_given_away_after_the_cool_down():
    clock = Clock()
    b = breaker(clock, failures=1)
    b.failed("a")
    clock.now += 10
    assert b.enter("lost")
    clock.now += 9
    assert not b.enter("next")
    clock.now += 1
    assert b.enter("next")


def test_zero_failures_never_opens():
    b = breaker(Clock(), failures=0)
    for i in range(100):
        b.failed(str(i))
    assert b.state is State.CLOSED


def test_only_failures_that_say_the_tier_is_down_count():
    assert counts_against_tier(TierUnavailable("tier 'large' did not accept within 2s"))
    assert not counts_against_tier(NatsUnavailable("NATS is down"))  # not the tier's fault
    assert not counts_against_tier(InvalidRequest("bad"))
    assert not counts_against_tier(TierDown("refused by the breaker"))


def _tiers(**kw) -> Tiers:
    return Tiers({"small": Answer(("small-a ", "small-b"), 0.2), "large": Answer(("large-a ", "large-b"), 0.9)}, **kw)


def _breaker_settings(on_tier_down: str) -> dict:
    return {"gateway": {"breaker": {"failures": 2, "open_s": 3600}, "on_tier_down": on_tier_down}}


async def _large_fails_twice(cascade, tiers: Tiers) -> None:
    for i in range(2):
        with pytest.raises(TierUnavailable, match="large down"):
            await run(cascade, dataclasses.replace(request("large"), request_id=f"fail-{i}"))
    tiers.calls.clear()


async def test_large_tier_down_answers_from_the_small_tier_and_says_so():
    cascade, sink = make(Router("large"), t := _tiers(fail={"large"}), **_breaker_settings("small"))
    await _large_fails_twice(cascade, t)
    chunks, record = await run(cascade, request())  # routed to large: stays on small, never escalates
    assert t.asked == ["small"]
    assert "".join(c.text for c in chunks) == "small-a small-b"
    assert record.route.reason == Reason.TIER_DOWN and record.route.tier_down == "large"
    t.calls.clear()
    _, record = await run(cascade, request())  # routed to small, unconfident: the escalation is barred
    assert t.asked == ["small"] and not record.route.escalated
    assert record.route.reason == Reason.TIER_DOWN and record.route.tier_down == "large"


async def test_large_tier_down_fails_fast_when_configured_to():
    cascade, sink = make(Router("large"), t := _tiers(fail={"large"}), **_breaker_settings("fail"))
    await _large_fails_twice(cascade, t)
    with pytest.raises(TierDown, match="tier 'large' is down"):
        await run(cascade, request())
    assert t.asked == []  # refused without asking the tier
    assert sink[-1].error is not None and sink[-1].error.code == TierDown.code
