"""Every NATS decoder and the gateway's gRPC methods, given malformed input on a real system.

The hypothesis sample (the "ci" profile's max_examples per decoder) goes through bench.fuzz's targets:
the real handlers, called with real NATS messages, replies through a real nats-server. Then one case per
service sent through NATS itself, and the service still serves a valid request afterwards.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc import aio
from hypothesis import settings
from nats.aio.msg import Msg

from bench.fuzz.inputs import SAMPLES, oversized
from bench.fuzz.run import fuzz
from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2, events_pb2
from services.core import subjects
from services.core.nats import NatsServer, connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes import ensure_stream, read_events
from tests.support.system import make_settings, openai_tier, run_system


def test_every_decoder_answers_every_malformed_input_and_still_serves(tmp_path: Path) -> None:
    results = list(fuzz(settings.default.max_examples, workdir=tmp_path))
    assert len(results) == 12
    for stats in results:
        assert stats.crashes == [] and stats.hangs == 0, stats.line()
        assert stats.still_serving, stats.line()
        assert stats.inputs >= settings.default.max_examples // 2  # hypothesis may stop early; not this early


LIMIT = 64 << 10


@pytest.fixture
async def system(nats_server, fake_openai):
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    settings_ = make_settings(
        nats_server.url, tiers, nats={"max_payload_bytes": LIMIT}, gateway={"max_request_bytes": LIMIT // 2}
    )
    async with run_system(nats_server, settings_) as system:
        yield system


@pytest.fixture
async def nc(system):
    nc = await connect_nats(system.nats_url, name="fuzz-test")
    yield nc
    await nc.drain()


async def test_the_router_answers_malformed_and_oversized_requests_with_the_fallback_tier(nc, system) -> None:
    for payload, error in [(b"\xff\xff", "malformed RouteRequest"), (oversized(LIMIT, 1), "over the limit")]:
        reply = events_pb2.RouteDecision.FromString((await nc.request(subjects.ROUTE, payload, timeout=5)).data)
        assert error in reply.error and reply.tier == system.settings.router.fallback_tier
    reply = events_pb2.RouteDecision.FromString(
        (await nc.request(subjects.ROUTE, SAMPLES["RouteRequest"], timeout=5)).data
    )
    assert reply.error == "" and reply.model_version


def _tier_request(request_id: str, chunk_subject: str) -> bytes:
    message = common_pb2.ChatMessage(role="user", content="Hello")
    return events_pb2.TierRequest(
        request_id=request_id, messages=[message], max_tokens=4, chunk_subject=chunk_subject
    ).SerializeToString()


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"\xff\xff", events_pb2.ERROR_CODE_INVALID_ARGUMENT, "malformed TierRequest"),
        (oversized(LIMIT, 1), events_pb2.ERROR_CODE_RESOURCE_EXHAUSTED, "over the limit of 65536"),
        # Regression: a chunk subject nats-py refuses to publish on failed only once the answer was
        # generated (logged as an unexpected failure, nothing sent back); now refused at admission.
        (_tier_request("t-1", "_INBOX.a b"), events_pb2.ERROR_CODE_INVALID_ARGUMENT, "is not an _INBOX subject"),
        (_tier_request("t-1", "cascade.route"), events_pb2.ERROR_CODE_INVALID_ARGUMENT, "is not an _INBOX subject"),
    ],
)
async def test_the_tier_worker_refuses_bad_requests_naming_why_and_still_serves(nc, payload, code, message) -> None:
    subject = subjects.tier_subject("small")
    accept = events_pb2.TierAccept.FromString((await nc.request(subject, payload, timeout=5)).data)
    assert accept.error.code == code and message in accept.error.message
    chunks = await nc.subscribe("_INBOX.fuzz-test.chunks")
    accept = events_pb2.TierAccept.FromString(
        (await nc.request(subject, _tier_request("t-2", "_INBOX.fuzz-test.chunks"), timeout=5)).data
    )
    assert not accept.HasField("error") and accept.request_id == "t-2"
    assert events_pb2.TokenChunk.FromString((await chunks.next_msg(timeout=10)).data).request_id == "t-2"
    await chunks.unsubscribe()  # chunks left unread would hold up the connection's drain


async def test_a_request_id_already_in_flight_is_refused(nc, system, fake_openai) -> None:
    # Regression: a second request with the same id replaced the first in the worker's task table,
    # so the first one's end removed the second (its cancel and the concurrency limit were lost).
    await fake_openai.control(delay_per_token_s=0.2, tokens=50)
    subject = subjects.tier_subject("small")
    first = events_pb2.TierAccept.FromString(
        (await nc.request(subject, _tier_request("dup", "_INBOX.x"), timeout=5)).data
    )
    again = events_pb2.TierAccept.FromString(
        (await nc.request(subject, _tier_request("dup", "_INBOX.x"), timeout=5)).data
    )
    assert not first.HasField("error")
    assert again.error.code == events_pb2.ERROR_CODE_INVALID_ARGUMENT and "already being served" in again.error.message
    await nc.publish(subjects.CANCEL, b"dup")


async def test_a_tier_request_without_a_reply_subject_is_dropped(nc, system, fake_openai) -> None:
    # Regression: the handler raised (nats-py's "no reply subject available") out of the callback.
    worker = system.workers["small"]
    msg = Msg(_client=nc, subject=subjects.tier_subject("small"), data=_tier_request("no-reply", "_INBOX.y"))
    await worker.handle_request(msg)  # nobody to accept to: logged and dropped, nothing started
    assert "no-reply" not in worker._tasks and (await fake_openai.stats())["requests"] == 0


async def test_the_gateway_refuses_bytes_that_are_no_request_and_oversized_ones(system) -> None:
    async with aio.insecure_channel(system.target) as channel:
        generate = channel.unary_unary("/cascade.v1.Cascade/Generate")  # no serializers: raw bytes
        with pytest.raises(aio.AioRpcError) as err:
            await generate(b"\xff\xff", timeout=10)
        # Regression: grpc answered a request it could not deserialize with INTERNAL.
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid message" in err.value.details()
        with pytest.raises(aio.AioRpcError) as err:
            await generate(oversized(LIMIT // 2, 1), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_the_outcome_reader_skips_malformed_and_oversized_events_on_jetstream(nats_server) -> None:
    outcomes = OutcomeSettings()
    nc = await connect_nats(nats_server.url, name="fuzz-reader")
    try:
        js = nc.jetstream()
        await ensure_stream(js, outcomes)
        for payload in (b"\xff\xff", oversized(1024, 1), SAMPLES["OutcomeEvent"]):
            await js.publish(subjects.OUTCOMES, payload)
        stream = outcomes.stream
        events = [e async for e in read_events(js, stream=stream, durable=None, max_payload_bytes=1024)]
    finally:
        await nc.drain()
    assert [e.request_id for e in events] == ["r-1"]


async def test_the_embedded_nats_server_takes_the_configured_max_payload(tmp_path: Path) -> None:
    async with NatsServer(data_dir=tmp_path / "nats", max_payload_bytes=LIMIT) as server:
        nc = await connect_nats(server.url, name="fuzz-max-payload")
        try:
            assert nc.max_payload == LIMIT
        finally:
            await nc.drain()


@pytest.mark.parametrize(
    ("policy", "hop"), [(cascade_pb2.POLICY_CASCADE, "the router"), (cascade_pb2.POLICY_LARGE, "tier 'large'")]
)
async def test_a_request_larger_than_the_nats_servers_max_payload_is_resource_exhausted(
    tmp_path, fake_openai, policy, hop
) -> None:
    # An external nats-server may allow less than nats.max_payload_bytes: nats-py refuses to send
    # (MaxPayloadError), which escaped as INTERNAL.
    tiers = {"small": openai_tier(fake_openai.base_url), "large": openai_tier(fake_openai.base_url)}
    async with (
        NatsServer(data_dir=tmp_path / "nats", max_payload_bytes=LIMIT) as server,
        run_system(server, make_settings(server.url, tiers)) as system,
        aio.insecure_channel(system.target) as channel,
    ):
        stub = cascade_pb2_grpc.CascadeStub(channel)
        with pytest.raises(aio.AioRpcError) as err:
            await stub.Generate(cascade_pb2.GenerateRequest(prompt="x" * (LIMIT + 1), policy=policy), timeout=10)
        answer = await stub.Generate(cascade_pb2.GenerateRequest(prompt="Hello", max_tokens=4), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"too large to send to {hop} over NATS" in err.value.details()
    assert answer.text
