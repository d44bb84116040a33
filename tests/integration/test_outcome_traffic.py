"""What traffic teaches: redacted texts in outcomes, and explored requests, through every real hop."""

from __future__ import annotations

import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from tests.support.data import write_routing_file
from tests.support.system import make_settings, openai_tier, read_outcomes, replay_tier, run_system

PROMPT = "My address is ann.lee@example.org; what is 6 times 7?"
ROWS = [
    ("p1", PROMPT, "small-7b", 0.0, "Ann (ann.lee@example.org), it is 41."),
    ("p1", PROMPT, "big-70b", 1.0, "6 times 7 is 42."),
]
PRICES = {"small": 0.2, "large": 0.9}


@pytest.fixture
def replay_file(tmp_path):
    return write_routing_file(tmp_path / "replay.parquet", ROWS)


async def test_a_stored_outcome_carries_the_redacted_texts(nats_server, replay_file):
    settings = make_settings(
        nats_server.url,
        {"small": replay_tier(replay_file, "small-7b", 0.2), "large": replay_tier(replay_file, "big-70b", 0.9)},
        outcomes={"store_prompt_text": True, "store_answer_text": True, "redact": ["email", "number"]},
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        resp = await stub.Generate(
            cascade_pb2.GenerateRequest(prompt=PROMPT, policy=cascade_pb2.POLICY_SMALL, request_id="r"), timeout=10
        )
        assert resp.text == "Ann (ann.lee@example.org), it is 41."  # the caller gets the answer as it is
        event = (await read_outcomes(system, durable="t"))["r"]
    assert event.prompt_text == "My address is [email]; what is [number] times [number]?"
    assert event.answer_text == "Ann ([email]), it is [number]."
    assert [a.text for a in event.attempts] == ["Ann ([email]), it is [number]."]
    assert "example.org" not in event.SerializeToString().decode("utf-8", "replace")


async def test_an_explored_request_is_answered_small_and_its_outcome_has_the_large_shadow_with_its_cost(
    nats_server, replay_file
):
    settings = make_settings(
        nats_server.url,
        {
            "small": replay_tier(replay_file, "small-7b", PRICES["small"]),
            "large": replay_tier(replay_file, "big-70b", PRICES["large"]),
        },
        router={"threshold": 1.0},  # the router sends every prompt to the small tier
        outcomes={"store_answer_text": True},
        exploration={"share": 1.0, "mode": "shadow"},
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        resp = await stub.Generate(
            cascade_pb2.GenerateRequest(prompt=PROMPT, policy=cascade_pb2.POLICY_ROUTE, request_id="x"), timeout=10
        )
        assert resp.text == "Ann (ann.lee@example.org), it is 41." and resp.route.tier == "small"
        await system.gateway.cascade.exploration.close(timeout_s=10)
        event = (await read_outcomes(system, durable="t"))["x"]
    assert event.exploration == "shadow" and event.route.tier == "small" and list(event.route.tiers_tried) == ["small"]
    answer, shadow = event.attempts
    assert (answer.tier, answer.purpose, answer.tier_rank) == ("small", "answer", 0)
    assert (shadow.tier, shadow.purpose, shadow.tier_rank) == ("large", "shadow", 1)
    assert shadow.text == "6 times 7 is 42." and shadow.replay_score == 1.0 and not shadow.error.code
    for a in event.attempts:  # each attempt priced at its own tier
        tokens = a.usage.input_tokens + a.usage.output_tokens
        assert a.cost_usd == pytest.approx(tokens * PRICES[a.tier] / 1e6) and a.cost_usd > 0
    assert event.cost_usd == pytest.approx(answer.cost_usd + shadow.cost_usd)
    assert resp.cost_usd == pytest.approx(answer.cost_usd)  # the caller's reply came before the shadow
    assert event.answer_text == resp.text


async def test_a_shadow_still_running_at_shutdown_is_published_before_the_gateway_stops(
    nats_server, replay_file, fake_openai
):
    # the large tier is a real OpenAI-compatible server that takes its time: the shadow is still running
    await fake_openai.control(delay_first_token_s=30)
    settings = make_settings(
        nats_server.url,
        {"small": replay_tier(replay_file, "small-7b", 0.2), "large": openai_tier(fake_openai.base_url, "fake-large")},
        router={"threshold": 1.0},
        exploration={"share": 1.0},
    )
    async with run_system(nats_server, settings) as system:
        async with aio.insecure_channel(system.target) as channel:
            stub = cascade_pb2_grpc.CascadeStub(channel)
            resp = await stub.Generate(
                cascade_pb2.GenerateRequest(prompt=PROMPT, policy=cascade_pb2.POLICY_ROUTE, request_id="s"), timeout=10
            )
        assert resp.route.tier == "small" and system.gateway.cascade.exploration.running == 1
        await system.gateway.stop(grace_s=0.5)  # run_system stops it again on exit: a no-op
        assert system.gateway.cascade.exploration.running == 0 and system.gateway.outcomes.pending == 0
        event = (await read_outcomes(system, durable="t"))["s"]
    shadow = event.attempts[-1]
    assert event.exploration == "shadow" and (shadow.tier, shadow.purpose) == ("large", "shadow")
    assert shadow.error.code == events_pb2.ERROR_CODE_CANCELLED
