"""The gateway's TierClient against a scripted tier on a real nats-server: answers are routed to the
stream that asked, in order, and a gap or a silence fails the answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import TierUnavailable
from services.core.nats import NatsServer, connect_nats
from services.gateway.clients import TierClient
from services.gateway.domain import TierCall
from services.tier.backends import Message

# What the scripted tier sends for a request: (seq, text, final) per chunk, given the request.
Script = Callable[[events_pb2.TierRequest], list[tuple[int, str, bool]]]


def _words(request: events_pb2.TierRequest) -> list[tuple[int, str, bool]]:
    words = request.messages[0].content.split()
    return [(i, f"{w} ", False) for i, w in enumerate(words)] + [(len(words), "", True)]


@pytest.fixture
async def ncs(nats_server: NatsServer) -> AsyncIterator[tuple[NatsClient, NatsClient]]:
    tier_nc = await connect_nats(nats_server.url, name="scripted-tier")
    gateway_nc = await connect_nats(nats_server.url, name="gateway")
    yield tier_nc, gateway_nc
    await gateway_nc.drain()
    await tier_nc.drain()


async def _serve(nc: NatsClient, script: Script) -> None:
    async def on_request(msg: Msg) -> None:
        request = events_pb2.TierRequest.FromString(msg.data)
        await msg.respond(events_pb2.TierAccept(request_id=request.request_id, tier="small").SerializeToString())
        for seq, text, final in script(request):
            chunk = events_pb2.TokenChunk(request_id=request.request_id, seq=seq, text=text, final=final)
            await nc.publish(request.chunk_subject, chunk.SerializeToString())
            await asyncio.sleep(0)  # interleave the answers of concurrent requests

    await nc.subscribe(subjects.tier_subject("small"), cb=on_request)
    await nc.flush()  # the server has the subscription before anything is sent to it


def _call(prompt: str) -> TierCall:
    deadline = int((time.time() + 10) * 1e3)
    return TierCall(
        request_id=prompt, messages=(Message(role="user", content=prompt),), max_tokens=8, temperature=None,
        stop=(), deadline_unix_ms=deadline,
    )  # fmt: skip


async def _text(client: TierClient, prompt: str) -> str:
    return "".join([piece.text async for piece in client.stream("small", _call(prompt))])


async def test_concurrent_answers_reach_the_stream_that_asked(ncs: tuple[NatsClient, NatsClient]) -> None:
    tier_nc, gateway_nc = ncs
    await _serve(tier_nc, _words)
    client = TierClient(gateway_nc, accept_timeout_s=2, idle_timeout_s=2)
    prompts = [" ".join(f"w{i}-{j}" for j in range(i % 5 + 1)) for i in range(30)]
    answers = await asyncio.gather(*(_text(client, p) for p in prompts))
    assert answers == [" ".join(p.split()) + " " for p in prompts]


async def test_a_lost_chunk_fails_the_answer(ncs: tuple[NatsClient, NatsClient]) -> None:
    tier_nc, gateway_nc = ncs
    await _serve(tier_nc, lambda r: [(0, "a", False), (2, "c", True)])
    client = TierClient(gateway_nc, accept_timeout_s=2, idle_timeout_s=2)
    with pytest.raises(TierUnavailable, match="lost chunk 1"):
        await _text(client, "x")


async def test_a_silent_tier_fails_the_answer_after_the_idle_timeout(ncs: tuple[NatsClient, NatsClient]) -> None:
    tier_nc, gateway_nc = ncs
    await _serve(tier_nc, lambda r: [(0, "a", False)])  # never final
    client = TierClient(gateway_nc, accept_timeout_s=2, idle_timeout_s=0.3)
    with pytest.raises(TierUnavailable, match="went silent"):
        await _text(client, "x")


async def test_a_worker_that_subscribes_just_after_the_request_is_still_asked(
    ncs: tuple[NatsClient, NatsClient],
) -> None:
    """Admission is retried on "no responders" (a worker that has just started is not always seen at once)."""
    tier_nc, gateway_nc = ncs
    client = TierClient(gateway_nc, accept_timeout_s=2, idle_timeout_s=2)
    answer = asyncio.create_task(_text(client, "late worker"))
    await asyncio.sleep(0.08)  # the first ask finds nobody
    await _serve(tier_nc, _words)
    assert await answer == "late worker "


async def test_no_worker_at_all_is_unavailable(ncs: tuple[NatsClient, NatsClient]) -> None:
    client = TierClient(ncs[1], accept_timeout_s=2, idle_timeout_s=2)
    with pytest.raises(TierUnavailable, match="no worker is serving tier 'small'"):
        await _text(client, "x")
