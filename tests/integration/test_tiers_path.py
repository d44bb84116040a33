"""Three replay tiers through every real hop: an unsure answer climbs small -> medium -> large."""

from __future__ import annotations

import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from tests.support.data import write_routing_file
from tests.support.system import make_settings, read_outcomes, replay_tier, run_system

CLIMB, STOP = "Which planet is largest?", "Which gas do plants take in?"
# (prompt, model, score, response): on CLIMB each tier gives another final answer, so each answer
# above the first disagrees with the one it replaces; on STOP the medium tier agrees with the small one.
ROWS = [
    ("p1", CLIMB, "m-7b", 0.0, "The answer is (A)."),
    ("p1", CLIMB, "m-8b", 0.0, "The answer is (B)."),
    ("p1", CLIMB, "m-70b", 1.0, "The answer is (C)."),
    ("p2", STOP, "m-7b", 1.0, "The answer is (D)."),
    ("p2", STOP, "m-8b", 1.0, "The answer is (D)."),
    ("p2", STOP, "m-70b", 1.0, "The answer is (D)."),
]
PRICES = {"small": 0.2, "medium": 0.3, "large": 0.9}


@pytest.fixture
def replay_file(tmp_path):
    return write_routing_file(tmp_path / "three.parquet", ROWS)


@pytest.fixture
async def three_tiers(nats_server, replay_file):
    def tier(model, price):
        return replay_tier(replay_file, model, price)

    settings = make_settings(
        nats_server.url,
        {"small": tier("m-7b", 0.2), "medium": tier("m-8b", 0.3), "large": tier("m-70b", 0.9)},
        router={"tiers": ["small", "medium", "large"], "thresholds": [1.0, 1.0]},  # every prompt starts small
        # agreement: a lone answer scores 0.5 (< 0.6: the small answer climbs); a higher answer is judged
        # against the earlier ones: 0 when it disagrees with them (climbs on), 1 when it agrees (kept).
        escalation={"confidence": "agreement", "step_min_confidence": [0.6, 0.5]},
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield system, cascade_pb2_grpc.CascadeStub(channel)


async def test_an_unsure_answer_climbs_every_tier_and_each_attempt_is_paid(three_tiers):
    system, stub = three_tiers
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt=CLIMB, request_id="climb"), timeout=20)
    assert resp.text == "The answer is (C)."
    route = resp.route
    assert route.tier == "large" and route.escalated and list(route.tiers_tried) == ["small", "medium", "large"]
    event = (await read_outcomes(system, durable="t"))["climb"]
    attempts = [(a.tier, a.purpose, a.replay_score) for a in event.attempts]
    assert attempts == [("small", "answer", 0.0), ("medium", "escalation", 0.0), ("large", "escalation", 1.0)]
    for a in event.attempts:  # each attempt is priced at its own tier's price
        tokens = a.usage.input_tokens + a.usage.output_tokens
        assert a.cost_usd == pytest.approx(tokens * PRICES[a.tier] / 1e6) and a.cost_usd > 0
    assert event.cost_usd == pytest.approx(sum(a.cost_usd for a in event.attempts))
    assert resp.cost_usd == pytest.approx(event.cost_usd)


async def test_an_agreeing_middle_answer_stops_the_climb(three_tiers):
    system, stub = three_tiers
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt=STOP, request_id="stop"), timeout=20)
    assert resp.text == "The answer is (D)." and resp.route.tier == "medium"
    assert list(resp.route.tiers_tried) == ["small", "medium"] and resp.route.agreement == 1.0
    event = (await read_outcomes(system, durable="t"))["stop"]
    assert [a.tier for a in event.attempts] == ["small", "medium"]


async def test_the_router_publishes_every_cut_of_the_tier_list(three_tiers):
    system, _ = three_tiers
    nc = await connect_nats(system.nats_url, name="probe")
    try:
        msg = await nc.request(subjects.ROUTE, events_pb2.RouteRequest(request_id="r", text=CLIMB).SerializeToString())
    finally:
        await nc.drain()
    decision = events_pb2.RouteDecision.FromString(msg.data)
    assert decision.tier == "small" and list(decision.thresholds) == [1.0, 1.0] and decision.threshold == 1.0
