"""Routers and workers on real parts: load shared through queue groups, the router's timeout fallback,
and a router model file hot-reloaded while requests are in flight."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import onnx
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2, events_pb2
from classifier.contract import CARD_FILE, ONNX_FILE
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import DEFAULT_ROUTER_MODEL
from services.router.service import RouterService
from services.tier.worker import TierWorker
from tests.support.system import eventually, make_settings, openai_tier, run_system


def tiers(base_url: str) -> dict:
    return {"small": openai_tier(base_url), "large": openai_tier(base_url)}


async def test_two_routers_and_two_workers_share_the_load_each_request_served_once(nats_server, fake_openai):
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url), router={"threshold": 0.0})
    async with run_system(nats_server, settings) as system:
        extra = [
            RouterService(nc=await connect_nats(system.nats_url, name="router-2"), settings=settings),
            TierWorker(
                nc=await connect_nats(system.nats_url, name="large-2"), tier="large", settings=settings.tiers["large"]
            ),
        ]
        for service in extra:
            await service.start()
        watch = await connect_nats(system.nats_url, name="decision-watch")
        decisions = await watch.subscribe(subjects.DECISIONS)
        await watch.flush()  # the server has the subscription before anything is sent to it
        try:
            async with aio.insecure_channel(system.target) as channel:
                stub = cascade_pb2_grpc.CascadeStub(channel)
                answers = await asyncio.gather(
                    *(stub.Generate(cascade_pb2.GenerateRequest(prompt=f"q{i}"), timeout=20) for i in range(12))
                )
            decided = [events_pb2.RouteDecision.FromString(m.data).request_id for m in await _all(decisions)]
        finally:
            await watch.drain()
            for service in extra:
                await service.stop()
            await extra[0]._nc.drain()
            await extra[1]._nc.drain()
    assert all(a.route.tier == "large" and a.text for a in answers)
    # One decision per request (a router outside the queue group would decide each twice) ...
    assert sorted(decided) == sorted(a.request_id for a in answers)
    # ... and one generation per request (a worker outside the queue group would generate each twice).
    assert (await fake_openai.stats())["requests"] == 12


async def _all(sub) -> list:  # type: ignore[no-untyped-def]
    """Every message the subscription got, until none comes for a second."""
    msgs = []
    while True:
        try:
            msgs.append(await sub.next_msg(timeout=1))
        except TimeoutError:
            return msgs


async def test_a_router_skips_a_request_whose_deadline_has_passed(nats_server, fake_openai):
    """A backlog after an outage is not scored for callers that gave up (RouteRequest.deadline_unix_ms)."""
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url))
    async with run_system(nats_server, settings, run_tiers=()):
        nc = await connect_nats(nats_server.url, name="fake-gateway")
        try:
            decisions = await nc.subscribe(subjects.DECISIONS)
            await nc.flush()  # the server has the subscription before anything is sent to it
            now_ms = int(time.time() * 1e3)
            late = events_pb2.RouteRequest(request_id="late", text="q", deadline_unix_ms=now_ms - 1000)
            await nc.publish(subjects.ROUTE, late.SerializeToString(), reply="_INBOX.nobody")
            on_time = events_pb2.RouteRequest(request_id="on-time", text="q", deadline_unix_ms=now_ms + 60_000)
            reply = await nc.request(subjects.ROUTE, on_time.SerializeToString(), timeout=10)  # after "late"
            assert events_pb2.RouteDecision.FromString(reply.data).request_id == "on-time"
            decided = [events_pb2.RouteDecision.FromString(m.data).request_id for m in await _all(decisions)]
        finally:
            await nc.drain()
    assert decided == ["on-time"]


@pytest.mark.parametrize("fallback", ["large", "small"])
async def test_a_router_that_does_not_answer_in_time_falls_back(nats_server, fake_openai, fallback):
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        router={"fallback_tier": fallback},
        gateway={"route_timeout_s": 0.3},
    )
    async with run_system(nats_server, settings, run_router=False) as system:
        nc = await connect_nats(system.nats_url, name="mute-router")
        mute = await nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE)  # takes requests, never answers
        await nc.flush()  # the server has the subscription before anything is sent to it
        try:
            async with aio.insecure_channel(system.target) as channel:
                resp = await cascade_pb2_grpc.CascadeStub(channel).Generate(
                    cascade_pb2.GenerateRequest(prompt="hi", policy=cascade_pb2.POLICY_ROUTE), timeout=10
                )
            assert mute.pending_msgs == 1  # the request did reach the (mute) router
        finally:
            await nc.close()
    assert resp.route.tier == fallback and resp.text
    assert resp.route.reason == common_pb2.PATH_REASON_ROUTER_FALLBACK
    assert "did not answer" in resp.route.router_error


def _write_version(model_dir: Path, version: str) -> None:
    """Turn the copy at ``model_dir`` into model ``version``: card first, then the ONNX file in one rename,
    so a reload never sees a half-written model."""
    card = json.loads((model_dir / CARD_FILE).read_text())
    (model_dir / CARD_FILE).write_text(json.dumps({**card, "version": version}))
    model = onnx.load(str(model_dir / ONNX_FILE))
    for entry in model.metadata_props:
        if entry.key == "version":
            entry.value = json.dumps(version)
    onnx.save(model, str(model_dir / "next.onnx"))
    os.replace(model_dir / "next.onnx", model_dir / ONNX_FILE)


async def test_a_local_model_file_is_hot_reloaded_while_requests_are_in_flight(nats_server, fake_openai, tmp_path):
    model_dir = Path(shutil.copytree(DEFAULT_ROUTER_MODEL, tmp_path / "model"))
    old = json.loads((model_dir / CARD_FILE).read_text())["version"]
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        router={"model": model_dir, "reload_interval_s": 0.1},
    )
    await fake_openai.control(delay_per_token_s=0.02)
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)

        async def ask(i: int) -> cascade_pb2.GenerateResponse:
            return await stub.Generate(
                cascade_pb2.GenerateRequest(prompt=f"q{i}", policy=cascade_pb2.POLICY_ROUTE), timeout=20
            )

        first = await ask(0)
        in_flight = [asyncio.create_task(ask(i)) for i in range(1, 9)]
        _write_version(model_dir, "20990101.hotreload")
        assert await eventually(lambda: system.router.policy._holder.model.version == "20990101.hotreload")
        during = await asyncio.gather(*in_flight)
        after = await ask(9)
    assert first.route.router_model_version == old
    assert all(r.text for r in during)  # nothing failed across the swap
    assert {r.route.router_model_version for r in during} <= {old, "20990101.hotreload"}
    assert after.route.router_model_version == "20990101.hotreload"
