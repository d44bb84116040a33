"""A tier worker's NATS edge carries n samples: TierRequest.n in, TokenChunk.samples out.

Real parts: a nats-server on a free port, the worker on its own connection, the fake
OpenAI-compatible server process behind it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects
from services.core.nats import NatsServer, connect_nats
from services.core.settings import TierSettings
from services.tier.admission import MAX_SAMPLES
from services.tier.worker import TierWorker
from tests.support.openai_server import FakeOpenAI

SCRIPTED = ["The answer is B", "It is C [[confidence=0.5]]", "Surely B and more words here"]


@pytest.fixture
async def client(nats_server: NatsServer, fake_openai: FakeOpenAI) -> AsyncIterator[NatsClient]:
    settings = TierSettings.model_validate(
        {"backend": "openai", "openai": {"base_url": fake_openai.base_url, "model": "fake-small"}}
    )
    worker_nc = await connect_nats(nats_server.url, name="tier-small")
    worker = TierWorker(nc=worker_nc, tier="small", settings=settings)
    await worker.start()
    nc = await connect_nats(nats_server.url, name="caller")
    try:
        yield nc
    finally:
        await nc.drain()
        await worker.stop(grace_s=1)
        await worker_nc.drain()


async def _ask(
    nc: NatsClient, request: events_pb2.TierRequest
) -> tuple[events_pb2.TierAccept, list[events_pb2.TokenChunk]]:
    """Send ``request``; its acceptance and its chunks up to the final one (none when refused)."""
    request.chunk_subject = nc.new_inbox()
    sub = await nc.subscribe(request.chunk_subject)
    await nc.flush()  # the server has the subscription before anything is sent to it
    reply = await nc.request(subjects.tier_subject("small"), request.SerializeToString(), timeout=5)
    accept = events_pb2.TierAccept.FromString(reply.data)
    received: list[events_pb2.TokenChunk] = []
    if not accept.HasField("error"):
        while not received or not received[-1].final:
            received.append(events_pb2.TokenChunk.FromString((await sub.next_msg(timeout=10)).data))
    await sub.unsubscribe()
    return accept, received


def _request(n: int) -> events_pb2.TierRequest:
    return events_pb2.TierRequest(
        request_id="r-samples",
        messages=[common_pb2.ChatMessage(role="user", content="pick one [[confidence=0.3]]")],
        max_tokens=64,
        want_logprobs=True,
        n=n,
    )


async def test_n_of_three_gets_a_final_chunk_with_two_samples(client: NatsClient, fake_openai: FakeOpenAI) -> None:
    await fake_openai.control(answers=SCRIPTED)
    _, chunks = await _ask(client, _request(3))
    *pieces, final = chunks
    assert "".join(c.text for c in chunks) == "The answer is B"
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(not c.samples for c in pieces)
    assert [s.text for s in final.samples] == ["It is C", "Surely B and more words here"]
    assert all(s.finish_reason == common_pb2.FINISH_REASON_STOP for s in final.samples)
    assert list(final.samples[0].token_logprobs) == pytest.approx([math.log(0.5)] * 3)
    assert list(final.samples[1].token_logprobs) == pytest.approx([math.log(0.3)] * 6)
    assert final.final and final.usage.output_tokens == 4 + 3 + 6


async def test_n_of_zero_or_one_gets_no_samples(client: NatsClient) -> None:
    for n in (0, 1):
        final = (await _ask(client, _request(n)))[1][-1]
        assert final.final and final.finish_reason == common_pb2.FINISH_REASON_STOP and not final.samples


async def test_too_many_samples_are_refused(client: NatsClient) -> None:
    accept, chunks = await _ask(client, _request(MAX_SAMPLES + 1))
    assert accept.error.code == events_pb2.ERROR_CODE_INVALID_ARGUMENT and not chunks
