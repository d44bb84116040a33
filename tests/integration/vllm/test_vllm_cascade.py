"""The whole cascade with both tiers on a genuine vLLM server: real streaming, real logprobs."""

from __future__ import annotations

import math

import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2
from tests.support.system import make_settings, openai_tier, run_system
from tests.support.vllm_server import VllmServer

pytestmark = pytest.mark.vllm


@pytest.fixture
async def stub(nats_server, vllm_server: VllmServer):
    tier = openai_tier(vllm_server.base_url, model=vllm_server.model)
    # min_confidence 1.0: every small answer (a random model's) escalates, so both tiers are exercised.
    settings = make_settings(
        nats_server.url, {"small": tier, "large": tier}, router={"threshold": 1.0}, escalation={"min_confidence": 1.0}
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield cascade_pb2_grpc.CascadeStub(channel)


async def test_generate_escalates_on_real_logprob_confidence(stub):
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="Tell me about lists.", max_tokens=8), timeout=120)
    assert resp.text
    assert list(resp.route.tiers_tried) == ["small", "large"] and resp.route.escalated
    assert 0.0 < resp.route.confidence < 1.0 and math.isfinite(resp.route.confidence)
    assert resp.usage.output_tokens == 16 and not resp.usage.estimated  # 8 per attempt, counted by vLLM
    assert resp.finish_reason == common_pb2.FINISH_REASON_LENGTH


async def test_stream_from_vllm_through_the_cascade(stub):
    request = cascade_pb2.GenerateRequest(prompt="Hello", max_tokens=10, policy=cascade_pb2.POLICY_LARGE)
    chunks = [c async for c in stub.GenerateStream(request, timeout=120)]
    *body, final = chunks
    assert len(body) >= 2 and all(c.tier == "large" for c in body)
    assert final.final and final.usage.output_tokens == 10
