"""The cascade's decisions, without sockets: router and tiers are injected, values are plain dataclasses."""

from __future__ import annotations

import asyncio

import pytest

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import Cancelled, DeadlineExceeded, TierUnavailable
from services.gateway import wire
from services.gateway.domain import Reason, TextChunk
from services.gateway.record import RequestRecord
from tests.unit.cascade_fakes import Answer, Router, Tiers, make, request, run


def tiers(small: float = 0.9, large: float = 0.9, **kw) -> Tiers:
    return Tiers(
        {"small": Answer(("small-a ", "small-b"), small), "large": Answer(("large-a ", "large-b"), large)}, **kw
    )


async def test_confident_small_answer_is_kept():
    cascade, sink = make(Router("small"), t := tiers(small=0.9))
    chunks, record = await run(cascade, request())
    assert t.asked == ["small"]
    assert "".join(c.text for c in chunks) == "small-a small-b"
    route = record.route
    assert route.tier == "small" and not route.escalated and route.reason == Reason.CONFIDENT
    assert route.confidence == pytest.approx(0.9) and route.confidence_threshold == 0.5
    assert route.confidence_model_version == "logprob-geomean-1"
    assert record.cost_usd() == pytest.approx((100 * 1.0 + 2 * 2.0) / 1e6)
    assert sink[0] is record and wire.outcome(record, store_prompt_text=False).route.reason == (
        common_pb2.PATH_REASON_CONFIDENT
    )


async def test_unconfident_small_answer_escalates_and_its_text_is_never_shown():
    cascade, sink = make(Router("small"), t := tiers(small=0.2, large=0.9))
    chunks, record = await run(cascade, request())
    assert t.asked == ["small", "large"]
    assert [c.tier for c in chunks] == ["large", "large"] and not any(c.retract for c in chunks)
    route = record.route
    assert route.escalated and route.tiers_tried == ["small", "large"] and route.reason == Reason.LOW_CONFIDENCE
    assert record.cost_usd() == pytest.approx((100 * 1.0 + 2 * 2.0 + 100 * 10.0 + 2 * 20.0) / 1e6)
    assert record.usage().input_tokens == 200
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert [a.confidence for a in event.attempts] == pytest.approx([0.2, 0.9])
    assert [a.purpose for a in event.attempts] == ["answer", "escalation"]


async def test_escalation_threshold_comes_from_settings():
    cascade, _ = make(Router("small"), t := tiers(small=0.2), escalation={"min_confidence": 0.1})
    _, record = await run(cascade, request())
    assert t.asked == ["small"] and record.route.confidence_threshold == 0.1


@pytest.mark.parametrize(
    ("policy", "routed_to", "asked", "reason", "router_calls"),
    [
        ("small", "large", ["small"], Reason.POLICY, 0),
        ("large", "small", ["large"], Reason.POLICY, 0),
        ("route", "small", ["small"], Reason.ROUTED, 1),  # low confidence, but route never escalates
        ("route", "large", ["large"], Reason.ROUTED, 1),
        ("cascade", "large", ["large"], Reason.ROUTED_LARGE, 1),
    ],
)
async def test_policies_and_their_reasons(policy, routed_to, asked, reason, router_calls):
    router = Router(routed_to)
    cascade, sink = make(router, t := tiers(small=0.1))
    _, record = await run(cascade, request(policy))
    assert t.asked == asked and record.route.reason == reason and router.calls == router_calls
    assert not record.route.escalated and record.route.policy == policy
    assert wire.outcome(sink[0], store_prompt_text=False).policy == policy


async def test_escalation_disabled_keeps_the_small_answer_and_says_so():
    cascade, _ = make(Router("small"), t := tiers(small=0.1), escalation={"enabled": False})
    _, record = await run(cascade, request())
    assert t.asked == ["small"] and record.route.reason == Reason.NO_ESCALATION


async def test_max_escalations_zero_never_escalates():
    cascade, _ = make(Router("small"), t := tiers(small=0.1), escalation={"max_escalations": 0})
    _, record = await run(cascade, request())
    assert t.asked == ["small"] and record.route.reason == Reason.NO_ESCALATION


async def test_small_failure_escalates_and_is_recorded():
    cascade, sink = make(Router("small"), t := tiers(fail={"small"}))
    _, record = await run(cascade, request())
    assert t.asked == ["small", "large"] and record.route.tier == "large"
    assert record.route.reason == Reason.SMALL_ERROR
    assert wire.outcome(sink[0], store_prompt_text=False).attempts[0].error.code == events_pb2.ERROR_CODE_UNAVAILABLE


async def test_small_failure_without_on_error_is_raised():
    cascade, _ = make(Router("small"), t := tiers(fail={"small"}), escalation={"on_error": False})
    with pytest.raises(TierUnavailable):
        await run(cascade, request())
    assert t.asked == ["small"]


async def test_large_failure_is_raised_and_recorded():
    cascade, sink = make(Router("large"), tiers(fail={"large"}))
    with pytest.raises(TierUnavailable):
        await run(cascade, request())
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert event.error.code == events_pb2.ERROR_CODE_UNAVAILABLE
    assert event.finish_reason == common_pb2.FINISH_REASON_ERROR


async def test_router_down_uses_the_fallback_tier_and_says_why():
    cascade, _ = make(Router(fail=True), tiers())
    _, record = await run(cascade, request())
    assert record.route.tier == "large" and "no router" in record.route.router_error
    assert record.route.reason == Reason.ROUTER_FALLBACK


class Slow(Tiers):
    async def stream(self, tier, call):
        await asyncio.sleep(10)
        yield  # pragma: no cover


async def test_deadline_is_enforced_and_recorded():
    cascade, sink = make(Router("large"), Slow({}))
    with pytest.raises(DeadlineExceeded):
        await run(cascade, request(), timeout_s=0.05)
    assert sink[0].error.code == events_pb2.ERROR_CODE_DEADLINE_EXCEEDED


async def test_cancellation_at_the_deadline_is_recorded_as_deadline_exceeded(monkeypatch):
    """gRPC cancels the handler when the caller's deadline passes: that is DEADLINE_EXCEEDED, not CANCELLED."""
    import time

    cascade, sink = make(Router("large"), Slow({}))
    task = asyncio.create_task(run(cascade, request(), timeout_s=30))
    await asyncio.sleep(0.05)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 31)  # gRPC's deadline won the race with our timer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(sink[0].error, DeadlineExceeded)


async def test_cancellation_before_the_deadline_is_cancelled():
    cascade, sink = make(Router("large"), Slow({}))
    task = asyncio.create_task(run(cascade, request(), timeout_s=30))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(sink[0].error, Cancelled)


async def test_record_is_the_last_item():
    cascade, _ = make(Router("small"), tiers())
    items = [i async for i in cascade.run(request(), timeout_s=5)]
    assert isinstance(items[-1], RequestRecord) and all(isinstance(i, TextChunk) for i in items[:-1])


async def test_failed_escalation_records_both_failures_and_that_it_escalated():
    cascade, sink = make(Router("small"), tiers(fail={"small", "large"}))
    with pytest.raises(TierUnavailable):
        await run(cascade, request())
    event = wire.outcome(sink[0], store_prompt_text=False)
    assert [a.tier for a in event.attempts] == ["small", "large"]
    assert all(a.error.code == events_pb2.ERROR_CODE_UNAVAILABLE for a in event.attempts)
    assert event.route.escalated and event.route.reason == common_pb2.PATH_REASON_SMALL_ERROR
