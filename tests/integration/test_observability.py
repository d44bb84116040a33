"""Metrics scraped over HTTP from a running gateway, router and tier workers; JSON log lines of a request.

The services run in this process (tests/support/system.py), so one Prometheus endpoint serves them
all; counters are cumulative over the session, so each test compares a scrape before and after.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.logs import RequestContext, json_formatter
from services.core.nats import connect_nats
from services.core.settings import CascadeSettings, HttpSettings
from services.http import HttpService
from tests.support.metrics import metrics_url, scrape, total, value
from tests.support.system import eventually, make_settings, openai_tier, run_system

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module", autouse=True)
def endpoint() -> str:
    return metrics_url()


async def generate(target: str, prompt: str, request_id: str, **kw: object) -> cascade_pb2.GenerateResponse:
    async with aio.insecure_channel(target) as channel:
        request = cascade_pb2.GenerateRequest(prompt=prompt, request_id=request_id, **kw)  # type: ignore[arg-type]
        metadata = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
        return await cascade_pb2_grpc.CascadeStub(channel).Generate(request, timeout=10, metadata=metadata)


def settings_for(nats_url: str, base_url: str) -> CascadeSettings:
    tiers = {"small": openai_tier(base_url), "large": openai_tier(base_url, input_per_mtok=1, output_per_mtok=1)}
    return make_settings(nats_url, tiers, router={"threshold": 1.0})  # the router starts everything small


async def test_requests_escalations_router_and_tiers_are_counted(nats_server, fake_openai):
    async with run_system(nats_server, settings_for(nats_server.url, fake_openai.base_url)) as system:
        before = await scrape()
        confident = await generate(system.target, "[[confidence=0.9]] easy", "obs-ok", policy=cascade_pb2.POLICY_AUTO)
        unsure = await generate(system.target, "[[confidence=0.1]] hard", "obs-esc", policy=cascade_pb2.POLICY_AUTO)
        assert (confident.route.tier, unsure.route.tier) == ("small", "large")
        await eventually(lambda: system.gateway.outcomes.pending == 0)
        after = await scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"policy": "cascade", "status": "OK"}
    assert grew("cascade_request_duration_seconds_count", tier="small", **ok) == 1
    assert grew("cascade_request_duration_seconds_count", tier="large", **ok) == 1
    assert grew("cascade_request_duration_seconds_sum", tier="large", **ok) > 0
    assert grew("cascade_escalations_total", reason="low_confidence", policy="cascade") == 1
    assert grew("cascade_confidence_count", tier="small") == 2  # both small answers were scored
    assert grew("cascade_cost_usd_total", tier="large", purpose="escalation") > 0
    assert total(after, "cascade_router_score_count", tier="small") - total(before, "cascade_router_score_count") == 2
    assert grew("cascade_router_duration_seconds_count") == 2
    assert grew("cascade_tier_duration_seconds_count", tier="small", status="OK") == 2
    assert grew("cascade_tier_duration_seconds_count", tier="large", status="OK") == 1
    assert grew("cascade_tier_tokens_total", tier="large", kind="output") > 0
    assert ("cascade_outcomes_pending", frozenset()) in after and ("cascade_outcomes_spool_bytes", frozenset()) in after


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes in telemetry.log_format: json (services/core/logs.py), captured."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContext())
    handler.setFormatter(json_formatter("tests"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_a_failed_request_is_counted_by_status_and_logged_as_json(nats_server, fake_openai, json_lines):
    await fake_openai.control(status_code=500)  # both tiers fail: the small one, then the large one
    async with run_system(nats_server, settings_for(nats_server.url, fake_openai.base_url)) as system:
        before = await scrape()
        with pytest.raises(aio.AioRpcError) as failed:
            await generate(system.target, "doomed", "obs-fail", policy=cascade_pb2.POLICY_AUTO)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        await eventually(lambda: system.gateway.outcomes.pending == 0)
        after = await scrape()
    failure = {"tier": "large", "policy": "cascade", "status": "UNAVAILABLE"}
    assert (
        value(after, "cascade_request_duration_seconds_count", **failure)
        - value(before, "cascade_request_duration_seconds_count", **failure)
        == 1
    )
    esc = {"reason": "small_error", "policy": "cascade"}
    assert value(after, "cascade_escalations_total", **esc) - value(before, "cascade_escalations_total", **esc) == 1

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "obs-fail"]
    assert mine and all(line["trace_id"] == TRACE_ID for line in mine), lines
    loggers = {line["logger"] for line in mine}
    assert {"cascade.tier.small", "cascade.tier.large"} <= loggers, loggers  # each tier under its own name
    assert all({"time", "level", "message", "service"} <= line.keys() for line in mine)


async def test_nats_reconnects_are_counted(nats_server):
    nc = await connect_nats(nats_server.url, name="obs-reconnect")
    try:
        before = value(await scrape(), "cascade_nats_reconnects_total", client="obs-reconnect")
        await nats_server.stop()
        await nats_server.start()  # the same port
        assert await eventually(lambda: nc.is_connected and nc.stats["reconnects"] >= 1, within_s=20)
        after = value(await scrape(), "cascade_nats_reconnects_total", client="obs-reconnect")
        assert after - before == 1
    finally:
        await nc.close()


async def test_the_http_front_door_counts_requests_by_route_and_status(nats_server, fake_openai):
    settings = settings_for(nats_server.url, fake_openai.base_url)
    async with run_system(nats_server, settings) as system:
        http = HttpService(
            settings=settings.model_copy(update={"http": HttpSettings(port=0, gateway_target=system.target)})
        )
        await http.start()
        try:
            before = await scrape()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", trust_env=False) as client:
                body = {"model": "cascade", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
                assert (await client.get("/v1/models/no-such-model")).status_code == 404
            after = await scrape()
        finally:
            await http.stop()

    def grew(**labels: str) -> float:
        name = "cascade_http_duration_seconds_count"
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(path="/v1/chat/completions", status="200") == 1
    assert grew(path="/v1/models/{name:path}", status="404") == 1


async def test_calls_refused_before_any_cascade_runs_are_counted_by_status(nats_server, fake_openai):
    """A request the gateway refuses outright (here: an empty prompt) leaves no outcome to count it by:
    the interceptor counts every failed call by method and status."""
    async with run_system(nats_server, settings_for(nats_server.url, fake_openai.base_url)) as system:
        before = await scrape()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await generate(system.target, "", "obs-empty")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        after = await scrape()
    labels = {"method": "Generate", "status": "INVALID_ARGUMENT"}
    assert value(after, "cascade_rpc_errors_total", **labels) - value(before, "cascade_rpc_errors_total", **labels) == 1
