"""One trace follows a request from the gRPC caller (the SDK) through the gateway and NATS into the tier worker."""

from __future__ import annotations

import httpx
import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.settings import HttpSettings
from services.http import HttpService
from services.sdk import AsyncCascadeClient
from tests.support.system import make_settings, openai_tier, run_system

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: OpenTelemetry refuses to replace it
    return exporter


async def test_trace_context_crosses_grpc_and_nats(spans, nats_server, fake_openai):
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        spans.clear()
        metadata = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
        request = cascade_pb2.GenerateRequest(prompt="trace me", policy=cascade_pb2.POLICY_AUTO)
        await cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=10, metadata=metadata)
    finished = {s.name: s for s in spans.get_finished_spans()}
    tier = next(name for name in finished if name.startswith("tier."))
    assert "cascade.request" in finished and "router.route" in finished
    for name in ("cascade.request", "router.route", tier):
        assert format(finished[name].context.trace_id, "032x") == TRACE_ID, name
        if name != "cascade.request":
            assert finished[name].parent.span_id == finished["cascade.request"].context.span_id, name


async def test_an_sdk_callers_span_is_the_parent_of_the_gateway_span(spans, nats_server, fake_openai):
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    async with run_system(nats_server, settings) as system, AsyncCascadeClient(target=system.target) as client:
        spans.clear()
        with trace.get_tracer("caller").start_as_current_span("caller.work") as caller:
            await client.generate("trace me", timeout=10)
            async for _ in client.stream("trace me too", timeout=10):
                pass
    finished = spans.get_finished_spans()
    caller_id = caller.get_span_context().span_id
    for method in ("Generate", "GenerateStream"):
        (server,) = [s for s in finished if s.name == f"/cascade.v1.Cascade/{method}"]
        assert server.kind is trace.SpanKind.SERVER and server.parent.span_id == caller_id, method
        (request,) = [s for s in finished if s.name == "cascade.request" and s.parent == server.context]
        assert request.context.trace_id == caller.get_span_context().trace_id, method


async def test_spans_carry_the_path_router_confidence_escalation_and_tokens(spans, nats_server, fake_openai):
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier}, router={"threshold": 1.0})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        spans.clear()
        request = cascade_pb2.GenerateRequest(prompt="[[confidence=0.1]] unsure", policy=cascade_pb2.POLICY_AUTO)
        await cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=10)
    finished = spans.get_finished_spans()
    attrs = next(s for s in finished if s.name == "cascade.request").attributes
    assert (attrs["cascade.tier"], attrs["cascade.tiers_tried"], attrs["cascade.escalated"]) == (
        "large",
        "small,large",
        True,
    )
    assert attrs["cascade.escalation.reason"] == "low_confidence"
    assert 0 < attrs["cascade.router.score"] < 1 and attrs["cascade.router.model_version"]
    assert 0 < attrs["cascade.confidence"] <= 1
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    router = next(s for s in finished if s.name == "router.route").attributes
    assert router["cascade.router.model_version"] == attrs["cascade.router.model_version"]
    small = next(s for s in finished if s.name == "tier.small").attributes
    assert small["gen_ai.usage.output_tokens"] > 0 and small["gen_ai.request.model"] == "fake-model"


async def test_an_http_callers_trace_continues_through_the_front_door(spans, nats_server, fake_openai):
    """The OpenAI front door passes the caller's `traceparent` on: the gateway's span joins that trace."""
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    async with run_system(nats_server, settings) as system:
        http_settings = HttpSettings(port=0, gateway_target=system.target)
        service = HttpService(settings=settings.model_copy(update={"http": http_settings}))
        await service.start()
        try:
            spans.clear()
            body = {"model": "cascade", "messages": [{"role": "user", "content": "trace me over http"}]}
            headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as http:
                response = await http.post("/v1/chat/completions", json=body, headers=headers, timeout=20)
            assert response.status_code == 200, response.text
        finally:
            await service.stop()
    (server,) = [s for s in spans.get_finished_spans() if s.name == "/cascade.v1.Cascade/Generate"]
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == "00f067aa0ba902b7"
