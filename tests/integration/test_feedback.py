"""Feedback is accepted only for a request the system served within the feedback window (else NOT_FOUND)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes import OutcomePublisher, SeenRequests, Spool, ensure_seen_stream, read_events
from tests.support.system import make_settings, openai_tier, run_system


@pytest.fixture
async def system(nats_server, fake_openai):
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    settings = make_settings(nats_server.url, tiers, outcomes={"feedback_window_s": 1.0})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield system, cascade_pb2_grpc.CascadeStub(channel)


async def stored_feedback(system) -> list[events_pb2.FeedbackEvent]:
    nc = await connect_nats(system.nats_url, name="t")
    try:
        js = nc.jetstream()
        events = read_events(js, stream=system.settings.outcomes.stream, durable=None, subject=subjects.FEEDBACK)
        return [e async for e in events]  # type: ignore[misc]
    finally:
        await nc.drain()


async def test_feedback_for_an_unknown_request_is_not_found_and_not_stored(system):
    system, stub = system
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Feedback(cascade_pb2.FeedbackRequest(request_id="never-sent", score=1.0), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "never-sent" in err.value.details() and "feedback window" in err.value.details()
    assert await stored_feedback(system) == []


async def test_feedback_within_the_window_counts_and_after_it_is_not_found(system):
    system, stub = system
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="hello", request_id="late.1:x"), timeout=10)
    fb = cascade_pb2.FeedbackRequest(request_id=resp.request_id, score=0.5)
    assert (await stub.Feedback(fb, timeout=5)).accepted
    await asyncio.sleep(1.5)  # past the 1 s window: the id has expired from the seen stream
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Feedback(cascade_pb2.FeedbackRequest(request_id=resp.request_id, score=0.9), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert [(e.request_id, e.score) for e in await stored_feedback(system)] == [("late.1:x", 0.5)]


async def test_an_id_is_known_while_its_record_is_pending_and_then_on_every_gateway_copy(nats_server, tmp_path):
    settings = OutcomeSettings()
    nc = await connect_nats(nats_server.url, name="t")
    try:
        js = nc.jetstream()
        await ensure_seen_stream(js, settings)
        serving = OutcomePublisher(nc, spool=Spool(tmp_path / "here", max_bytes=1 << 20))
        serving.start()
        here = SeenRequests(nc, publisher=serving, settings=settings)
        other = OutcomePublisher(nc, spool=Spool(tmp_path / "elsewhere", max_bytes=1 << 20))
        elsewhere = SeenRequests(nc, publisher=other, settings=settings)
        here.record("r-1")
        assert serving.is_pending("seen:r-1")
        assert await here.seen("r-1")  # feedback that overtakes the asynchronous write is not refused
        await serving.close()  # waits until JetStream acknowledged the record
        assert await elsewhere.seen("r-1") and await here.seen("r-1")
        assert not await elsewhere.seen("r-2")
    finally:
        await nc.drain()


async def test_feedback_while_the_answer_still_streams_is_accepted(system):
    system, stub = system
    call = stub.GenerateStream(
        cascade_pb2.GenerateRequest(prompt="Tell me a story.", policy=cascade_pb2.POLICY_LARGE, max_tokens=40),
        timeout=10,
    )
    chunks = aiter(call)
    first = await anext(chunks)  # the request id arrives with the first chunk, before the outcome exists
    fb = cascade_pb2.FeedbackRequest(request_id=first.request_id, score=1.0)
    assert (await stub.Feedback(fb, timeout=5)).accepted
    assert [c async for c in chunks][-1].final
