"""The cascade's decisions, without sockets: router and tiers are injected."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import DeadlineExceeded, TierUnavailable, Unavailable
from services.core.settings import CascadeSettings
from services.gateway.cascade import Cascade, TextChunk
from services.gateway.record import RequestRecord
from services.gateway.requests import CascadeRequest
from services.tier.backends import Message

TIER = {"backend": "openai", "openai": {"model": "m"}}


def settings(**over) -> CascadeSettings:
    tiers = {
        "small": {**TIER, "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        "large": {**TIER, "price": {"input_per_mtok": 10.0, "output_per_mtok": 20.0}},
    }
    return CascadeSettings(tiers=tiers, **over)


def request(policy: str = "auto", text: str = "q") -> CascadeRequest:
    return CascadeRequest(
        request_id="r1",
        messages=(Message(role="user", content=text),),
        routed_text=text,
        max_tokens=16,
        temperature=None,
        stop=(),
        policy=policy,
        tenant="t",
    )


class Router:
    def __init__(self, tier: str = "small", fail: bool = False) -> None:
        self.tier, self.fail, self.calls = tier, fail, 0

    async def route(self, *, request_id: str, text: str, timeout_s: float) -> events_pb2.RouteDecision:
        self.calls += 1
        if self.fail:
            raise Unavailable("no router is running")
        return events_pb2.RouteDecision(
            request_id=request_id, tier=self.tier, score=0.3, threshold=0.5, model_version="v1"
        )


class Tiers:
    """Answers with fixed words; per-tier token probability, or an error."""

    def __init__(self, prob: dict[str, float], fail: set[str] = frozenset()) -> None:
        self.prob, self.fail, self.asked = prob, fail, []

    async def stream(self, tier: str, req: events_pb2.TierRequest) -> AsyncIterator[events_pb2.TokenChunk]:
        self.asked.append(tier)
        if tier in self.fail:
            raise TierUnavailable(f"{tier} down")
        lp = math.log(self.prob[tier])
        for i, word in enumerate([f"{tier}-a ", f"{tier}-b"]):
            yield events_pb2.TokenChunk(seq=i, tier=tier, text=word, token_logprobs=[lp])
        usage = common_pb2.Usage(input_tokens=100, output_tokens=2)
        yield events_pb2.TokenChunk(
            seq=2, tier=tier, final=True, finish_reason=common_pb2.FINISH_REASON_STOP, usage=usage
        )


async def run(cascade: Cascade, req: CascadeRequest, timeout_s: float = 5.0):
    chunks, record = [], None
    async for item in cascade.run(req, timeout_s=timeout_s):
        if isinstance(item, TextChunk):
            chunks.append(item)
        else:
            record = item
    return chunks, record


def make(router, tiers, **over):
    sink: list[events_pb2.OutcomeEvent] = []
    return Cascade(router=router, tiers=tiers, record_outcome=sink.append, settings=settings(**over)), sink


async def test_confident_small_answer_is_kept():
    cascade, sink = make(Router("small"), tiers := Tiers({"small": 0.9, "large": 0.9}))
    chunks, record = await run(cascade, request())
    assert tiers.asked == ["small"]
    assert "".join(c.text for c in chunks) == "small-a small-b"
    assert record.route.tier == "small" and not record.route.escalated
    assert record.route.confidence == pytest.approx(0.9)
    assert record.cost_usd() == pytest.approx((100 * 1.0 + 2 * 2.0) / 1e6)
    assert sink[0].route.tier == "small" and sink[0].finish_reason == common_pb2.FINISH_REASON_STOP


async def test_unconfident_small_answer_escalates_and_its_text_is_never_shown():
    cascade, sink = make(Router("small"), tiers := Tiers({"small": 0.2, "large": 0.9}))
    chunks, record = await run(cascade, request())
    assert tiers.asked == ["small", "large"]
    assert [c.tier for c in chunks] == ["large", "large"]
    assert record.route.escalated and list(record.route.tiers_tried) == ["small", "large"]
    assert record.cost_usd() == pytest.approx((100 * 1.0 + 2 * 2.0 + 100 * 10.0 + 2 * 20.0) / 1e6)
    assert record.usage().input_tokens == 200
    assert [a.confidence for a in sink[0].attempts] == pytest.approx([0.2, 0.9])


async def test_escalation_threshold_comes_from_settings():
    cascade, _ = make(Router("small"), tiers := Tiers({"small": 0.2, "large": 0.9}), escalation={"min_confidence": 0.1})
    await run(cascade, request())
    assert tiers.asked == ["small"]


async def test_fixed_policies_skip_the_router_and_never_escalate():
    router = Router("large")
    cascade, _ = make(router, tiers := Tiers({"small": 0.1, "large": 0.9}))
    _, record = await run(cascade, request("small"))
    assert router.calls == 0 and tiers.asked == ["small"] and not record.route.escalated


async def test_small_failure_escalates_and_is_recorded():
    cascade, sink = make(Router("small"), tiers := Tiers({"large": 0.9}, fail={"small"}))
    _, record = await run(cascade, request())
    assert tiers.asked == ["small", "large"] and record.route.tier == "large"
    assert sink[0].attempts[0].error.code == events_pb2.ERROR_CODE_UNAVAILABLE


async def test_large_failure_is_raised_and_recorded():
    cascade, sink = make(Router("large"), Tiers({}, fail={"large"}))
    with pytest.raises(TierUnavailable):
        await run(cascade, request())
    assert sink[0].error.code == events_pb2.ERROR_CODE_UNAVAILABLE
    assert sink[0].finish_reason == common_pb2.FINISH_REASON_ERROR


async def test_router_down_uses_the_fallback_tier_and_says_why():
    cascade, _ = make(Router(fail=True), Tiers({"small": 0.9, "large": 0.9}))
    _, record = await run(cascade, request())
    assert record.route.tier == "large" and "no router" in record.route.router_error


async def test_deadline_is_enforced_and_recorded():
    class Slow(Tiers):
        async def stream(self, tier, req):
            import asyncio

            await asyncio.sleep(10)
            yield events_pb2.TokenChunk()

    cascade, sink = make(Router("large"), Slow({}))
    with pytest.raises(DeadlineExceeded):
        await run(cascade, request(), timeout_s=0.05)
    assert sink[0].error.code == events_pb2.ERROR_CODE_DEADLINE_EXCEEDED


async def test_record_is_the_last_item():
    cascade, _ = make(Router("small"), Tiers({"small": 0.9, "large": 0.9}))
    items = [i async for i in cascade.run(request(), timeout_s=5)]
    assert isinstance(items[-1], RequestRecord) and all(isinstance(i, TextChunk) for i in items[:-1])


async def test_failed_escalation_records_both_failures():
    cascade, sink = make(Router("small"), Tiers({}, fail={"small", "large"}))
    with pytest.raises(TierUnavailable):
        await run(cascade, request())
    assert [a.tier for a in sink[0].attempts] == ["small", "large"]
    assert all(a.error.code == events_pb2.ERROR_CODE_UNAVAILABLE for a in sink[0].attempts)
