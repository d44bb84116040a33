"""tiers.<name>.mode embedded: the gateway calls the tier's backend itself (a real OpenAI-compatible server
process over HTTP), with the answers, limits and errors of a tier worker, and nothing on the tier's subject."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from nats.aio.msg import Msg

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core import subjects
from services.core.nats import connect_nats, free_port
from tests.support.system import make_settings, openai_tier, read_outcomes, run_system


def embedded(tier: dict, **extra) -> dict:
    return {**tier, "mode": "embedded", **extra}


@pytest.fixture
async def mixed(nats_server, fake_openai):
    """small embedded in the gateway, large on a tier worker: escalation crosses the two."""
    settings = make_settings(
        nats_server.url,
        {"small": embedded(openai_tier(fake_openai.base_url)), "large": openai_tier(fake_openai.base_url)},
        escalation={"min_confidence": 0.95},  # the fake server's tokens have probability 0.9: escalates
        router={"threshold": 1.0},  # every prompt starts on small
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield system, cascade_pb2_grpc.CascadeStub(channel)


async def test_no_worker_is_started_and_no_request_goes_over_nats_for_an_embedded_tier(mixed, nats_server):
    system, stub = mixed
    assert set(system.workers) == {"large"}
    nc = await connect_nats(nats_server.url, name="test-listener")
    heard: list[bytes] = []

    async def listen(msg: Msg) -> None:
        heard.append(msg.data)

    await nc.subscribe(subjects.tier_subject("small"), cb=listen)
    try:
        resp = await stub.Generate(
            cascade_pb2.GenerateRequest(prompt="Name a prime.", request_id="emb-1", policy=cascade_pb2.POLICY_SMALL),
            timeout=10,
        )
        await nc.flush()
    finally:
        await nc.drain()
    assert resp.route.tier == "small" and resp.text.strip()
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.route.confidence == pytest.approx(0.9, abs=1e-3)  # the logprobs came through
    assert heard == []
    [attempt] = (await read_outcomes(system, durable="emb1"))["emb-1"].attempts
    assert (attempt.tier, attempt.backend, attempt.model) == ("small", "openai", "fake-model")


async def test_an_embedded_answer_is_the_one_a_worker_gives(nats_server, fake_openai):
    """The same prompt through a worker and through the gateway itself: same text, usage and confidence."""
    answers = {}
    for mode in ("worker", "embedded"):
        tier = {**openai_tier(fake_openai.base_url), "mode": mode}
        settings = make_settings(nats_server.url, {"small": tier, "large": openai_tier(fake_openai.base_url)})
        async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
            request = cascade_pb2.GenerateRequest(prompt="Why is the sky blue?", policy=cascade_pb2.POLICY_SMALL)
            resp = await cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=10)
            answers[mode] = (resp.text, resp.usage.input_tokens, resp.usage.output_tokens, resp.route.confidence)
    text, tokens_in, tokens_out, confidence = answers["worker"]
    # TokenChunk carries logprobs as float32: the worker's confidence differs in the 9th digit.
    assert answers["embedded"] == (text, tokens_in, tokens_out, pytest.approx(confidence, rel=1e-6))


async def test_a_weak_embedded_answer_escalates_to_the_worker_tier(mixed):
    _, stub = mixed
    request = cascade_pb2.GenerateRequest(prompt="Prove it.", policy=cascade_pb2.POLICY_CASCADE)
    route = (await stub.Generate(request, timeout=10)).route
    assert route.escalated and list(route.tiers_tried) == ["small", "large"] and route.tier == "large"


async def test_an_embedded_tier_streams_token_by_token(mixed, fake_openai):
    _, stub = mixed
    request = cascade_pb2.GenerateRequest(prompt="Count to five.", policy=cascade_pb2.POLICY_SMALL)
    unary = await stub.Generate(request, timeout=10)
    chunks = [c async for c in stub.GenerateStream(request, timeout=10)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1 and "".join(texts) == unary.text
    assert chunks[-1].final and chunks[-1].usage.output_tokens == unary.usage.output_tokens


async def test_an_embedded_tier_refuses_beyond_its_limit(nats_server, fake_openai):
    tier = embedded(openai_tier(fake_openai.base_url), max_concurrency=1)
    settings = make_settings(nats_server.url, {"small": tier, "large": openai_tier(fake_openai.base_url)})
    await fake_openai.control(delay_first_token_s=1.0)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        request = cascade_pb2.GenerateRequest(prompt="Slow one.", policy=cascade_pb2.POLICY_SMALL)
        first = asyncio.ensure_future(stub.Generate(request, timeout=10))
        await asyncio.sleep(0.3)  # the first call holds the tier's one slot
        with pytest.raises(grpc.RpcError) as refused:
            await stub.Generate(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tier small is at its limit of 1 requests" in (refused.value.details() or "")
        assert (await first).text  # the call in its slot is unharmed


async def test_an_embedded_tier_whose_server_is_down_is_unavailable(nats_server, fake_openai):
    down = embedded(openai_tier(f"http://127.0.0.1:{free_port()}/v1"))  # nothing listens there
    settings = make_settings(nats_server.url, {"small": down, "large": openai_tier(fake_openai.base_url)})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        request = cascade_pb2.GenerateRequest(prompt="Anyone?", request_id="down-1", policy=cascade_pb2.POLICY_SMALL)
        with pytest.raises(grpc.RpcError) as failed:
            await cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        event = (await read_outcomes(system, durable="down"))["down-1"]
        assert "cannot reach http://127.0.0.1:" in event.error.message  # recorded, as a worker would report it
