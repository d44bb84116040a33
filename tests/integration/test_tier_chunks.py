"""A tier worker gathers tokens into chunks by TierRequest.chunk_interval_ms: fewer messages, same answer.

Real parts: a nats-server on a free port, the worker on its own connection. The backend is a
scripted in-process one, so the test decides when each token is ready (no sleeps, no timing asserts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects
from services.core.nats import NatsServer, connect_nats
from services.core.settings import TierSettings
from services.tier.backends import Delta, Generation
from services.tier.worker import TierWorker

# The backend named here is never built: the worker is handed the scripted one.
SETTINGS = TierSettings.model_validate(
    {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:9", "model": "m"}}
)
TOKENS = ["one", " two", " three", " four", " five"]


class Scripted:
    """Yields TOKENS; after the first ``pause_after`` it waits until ``go`` is set (a stalled model)."""

    kind, model = "scripted", "s"

    def __init__(self, *, pause_after: int | None = None) -> None:
        self.pause_after = pause_after
        self.go = asyncio.Event()

    async def stream(self, generation: Generation) -> AsyncIterator[Delta]:
        for i, token in enumerate(TOKENS):
            if i == self.pause_after:
                await self.go.wait()
            yield Delta(text=token, token_logprobs=(-0.1,))
        yield Delta(finish_reason="stop", input_tokens=2, output_tokens=len(TOKENS))

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    client = await connect_nats(nats_server.url, name="caller")
    try:
        yield client
    finally:
        await client.drain()


async def _worker(nats_server: NatsServer, backend: Scripted) -> tuple[TierWorker, NatsClient]:
    worker_nc = await connect_nats(nats_server.url, name="tier-small")
    worker = TierWorker(nc=worker_nc, tier="small", settings=SETTINGS, backend=backend)
    await worker.start()
    return worker, worker_nc


async def _ask(nc: NatsClient, interval_ms: int, hold: bool, backend: Scripted) -> list[events_pb2.TokenChunk]:
    request = events_pb2.TierRequest(
        request_id="r-chunks",
        messages=[common_pb2.ChatMessage(role="user", content="count")],
        max_tokens=16,
        chunk_subject=nc.new_inbox(),
        chunk_interval_ms=interval_ms,
        hold_first_token=hold,
    )
    sub = await nc.subscribe(request.chunk_subject)
    await nc.flush()
    await nc.request(subjects.tier_subject("small"), request.SerializeToString(), timeout=5)
    received: list[events_pb2.TokenChunk] = []
    while not received or not received[-1].final:
        received.append(events_pb2.TokenChunk.FromString((await sub.next_msg(timeout=10)).data))
        if backend.pause_after is not None and len(received) == 2:
            backend.go.set()  # the gathered tokens came while the model stalled: the timer sent them
    await sub.unsubscribe()
    return received


@pytest.mark.parametrize(
    ("interval_ms", "hold", "pause_after", "texts"),
    [
        (0, False, None, [*TOKENS, ""]),  # one message per token, then the final chunk
        (0, True, None, [*TOKENS, ""]),  # nothing to hold for without an interval
        (10_000, False, None, ["one", " two three four five"]),  # the first at once, the rest with the final
        (10_000, True, None, ["one two three four five"]),  # a unary caller's: the whole answer in one
        # A stall after three tokens: the two gathered behind the first go when the interval ends (1 s:
        # long beside a loaded machine's hiccups, which must not split " four five").
        (1000, False, 3, ["one", " two three", " four five"]),
    ],
)
async def test_tokens_are_gathered_per_interval(
    nats_server: NatsServer, nc: NatsClient, interval_ms: int, hold: bool, pause_after: int | None, texts: list[str]
) -> None:
    backend = Scripted(pause_after=pause_after)
    worker, worker_nc = await _worker(nats_server, backend)
    try:
        chunks = await _ask(nc, interval_ms, hold, backend)
    finally:
        await worker.stop(grace_s=1)
        await worker_nc.drain()
    assert [c.text for c in chunks] == texts
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [len(c.token_logprobs) for c in chunks] == [len(c.text.split()) for c in chunks]
    assert chunks[-1].final and chunks[-1].usage.output_tokens == len(TOKENS)
    assert not any(c.final for c in chunks[:-1])
