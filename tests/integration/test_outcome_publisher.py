"""Outcome events are never lost and never stored twice: retries through a JetStream outage, message-id
de-duplication, the flush at shutdown; and the gateway names each outcome by its request id.

(What the spool adds, a gateway killed or NATS itself away, is in test_outcome_spool.py.)"""

from __future__ import annotations

import asyncio

import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes import OutcomePublisher, Spool, ensure_stream
from services.outcomes.spool import read_journal
from tests.support.system import eventually, make_settings, openai_tier, read_outcomes, run_system

SETTINGS = OutcomeSettings()
LARGE = cascade_pb2.POLICY_LARGE


@pytest.fixture
async def nc(nats_server):
    nc = await connect_nats(nats_server.url, name="publisher-test")
    await ensure_stream(nc.jetstream(), SETTINGS)
    yield nc
    await nc.drain()


@pytest.fixture
def js(nc):
    return nc.jetstream()


@pytest.fixture
def publisher(nc, tmp_path):  # type: ignore[no-untyped-def]
    """A publisher on its own spool that does not re-create a missing stream (so an outage lasts)."""

    def make(**kwargs: float) -> OutcomePublisher:
        return OutcomePublisher(nc, spool=Spool(tmp_path / "spool", max_bytes=1 << 24), **kwargs)

    return make


async def stored(js) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """(Nats-Msg-Id, payload) of every message in the outcome stream."""
    info = await js.stream_info(SETTINGS.stream)
    msgs = [await js.get_msg(SETTINGS.stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    return [((m.headers or {}).get("Nats-Msg-Id", ""), m.data) for m in msgs if m.data is not None]


async def test_an_event_submitted_during_a_jetstream_outage_is_stored_once_it_is_back(js, publisher, caplog):
    await js.delete_stream(SETTINGS.stream)  # the outage: nothing stores outcome events
    publisher = publisher(timeout_s=0.5, max_backoff_s=0.1)
    publisher.start()
    publisher.submit(subjects.OUTCOMES, "outcome:outage-1", b"event")
    assert await eventually(lambda: "outcome events wait in the spool until JetStream stores them" in caplog.text)
    assert "no stream is listening on cascade.outcomes.request" in caplog.text  # and says why
    await asyncio.sleep(0.5)  # a few more attempts fail meanwhile
    await ensure_stream(js, SETTINGS)
    await publisher.close()
    assert await stored(js) == [("outcome:outage-1", b"event")]


async def test_a_retried_event_with_the_same_message_id_is_stored_once(js, publisher):
    publisher = publisher()
    publisher.start()
    for _ in range(3):  # e.g. an acknowledgement lost, the event sent again
        publisher.submit(subjects.OUTCOMES, "outcome:dup-1", b"event")
    publisher.submit(subjects.OUTCOMES, "outcome:other", b"other")
    await publisher.close()
    assert await stored(js) == [("outcome:dup-1", b"event"), ("outcome:other", b"other")]
    assert not await publisher.publish_now(subjects.OUTCOMES, "outcome:dup-1", b"event")  # a duplicate


async def test_close_flushes_every_queued_event(js, publisher):
    publisher = publisher()
    publisher.start()
    # More than one batch (the publisher's window, 64): close must wait for the later batches, not only
    # for the one already handed to NATS.
    for i in range(300):
        publisher.submit(subjects.OUTCOMES, f"outcome:flush-{i}", str(i).encode())
    await publisher.close()  # at once: the queue is still full
    assert [msg_id for msg_id, _ in await stored(js)] == [f"outcome:flush-{i}" for i in range(300)]


async def test_close_waits_for_a_stream_that_comes_back(js, publisher):
    await js.delete_stream(SETTINGS.stream)
    publisher = publisher(timeout_s=0.5, max_backoff_s=0.1)
    publisher.start()
    publisher.submit(subjects.OUTCOMES, "outcome:late-1", b"event")
    closing = asyncio.create_task(publisher.close(timeout_s=30))
    await asyncio.sleep(0.3)
    assert not closing.done()  # shutdown waits for the unacknowledged event
    await ensure_stream(js, SETTINGS)
    await closing
    assert await stored(js) == [("outcome:late-1", b"event")]


async def test_the_gateway_names_each_outcome_by_its_request_id(nats_server, fake_openai, js, publisher):
    """So that a re-published outcome (a retry after a lost acknowledgement) is de-duplicated by JetStream."""
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        await stub.Generate(
            cascade_pb2.GenerateRequest(prompt="hi", request_id="named-1", policy=cascade_pb2.POLICY_LARGE), timeout=10
        )
        assert set(await read_outcomes(system)) == {"named-1"}
    ((msg_id, payload),) = await stored(js)
    assert msg_id == "outcome:named-1"
    assert not await publisher().publish_now(subjects.OUTCOMES, msg_id, payload)  # stored once


async def test_close_gives_up_after_its_timeout_and_leaves_every_event_in_the_spool(js, publisher, tmp_path, caplog):
    await js.delete_stream(SETTINGS.stream)  # and it never comes back
    publisher = publisher(timeout_s=0.5, max_backoff_s=0.1)
    publisher.start()
    for name in ("a", "b", "c"):
        publisher.submit(subjects.OUTCOMES, f"outcome:{name}", b"event")
    await publisher.close(timeout_s=0.5)
    # The ones being retried count too, not only those still queued; all stay for the next start.
    assert "3 outcome events not acknowledged at shutdown" in caplog.text
    assert len(read_journal(tmp_path / "spool").events) == 3


async def test_the_gateway_flushes_its_outcomes_when_it_stops(nats_server, fake_openai, js):
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier}, outcomes={"publish_timeout_s": 0.5})
    async with run_system(nats_server, settings) as system:
        await js.delete_stream(SETTINGS.stream)  # the outcome cannot be stored as it is
        async with aio.insecure_channel(system.target) as channel:
            stub = cascade_pb2_grpc.CascadeStub(channel)
            await stub.Generate(
                cascade_pb2.GenerateRequest(prompt="hi", request_id="flush-1", policy=LARGE), timeout=10
            )
        # The gateway's publisher creates the stream again and stores the outcome before it exits.
        await system.gateway.stop(grace_s=5)
    assert [msg_id for msg_id, _ in await stored(js)] == ["outcome:flush-1"]
