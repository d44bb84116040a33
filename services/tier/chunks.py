"""One answer's TokenChunks: numbered, gathered by a flush interval, published to the caller's subject.

Why gather: a chunk is a NATS message through the worker, nats-server and the gateway (py-spy under
bench/overhead put the worker's per-chunk publish and the gateway's per-chunk decode among their
largest shares). With ``chunk_interval_ms`` above 0 the first token still goes at once (time to first
token is unchanged), later tokens go at most once per interval, and the final chunk goes as soon as
the backend finishes, with everything gathered since the last send. A backend that yields tokens
faster than the interval (a fast model, or one server read holding many events) then costs two
messages per answer instead of one per token (one with ``hold_first_token``, which unary callers
ask for: they see nothing before the end); a slow one still streams token by token.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import CascadeError
from services.core.wire import FINISH_REASONS, error_info
from services.tier.backends import Delta, SampleAnswer


class ChunkSender:
    """Numbers, gathers and publishes one answer's chunks; ``close`` it when the answer ends."""

    def __init__(self, nc: NatsClient, request: events_pb2.TierRequest, tier: str) -> None:
        self._nc, self._subject, self._tier = nc, request.chunk_subject, tier
        self._request_id = request.request_id
        self._interval_s = request.chunk_interval_ms / 1e3
        self._seq = 0
        self._texts: list[str] = []
        self._logprobs: list[float] = []
        # The first token goes at once, unless the caller asked to hold it (hold_first_token).
        hold = request.hold_first_token and self._interval_s > 0
        self._last_sent = asyncio.get_running_loop().time() if hold else -float("inf")
        self._timer: asyncio.TimerHandle | None = None
        # A flush the timer started: every later send waits for it, so chunks leave in seq order.
        self._flushing: asyncio.Task[None] | None = None

    async def send(self, chunk: events_pb2.TokenChunk) -> None:
        chunk.request_id, chunk.tier, chunk.seq = self._request_id, self._tier, self._seq
        self._seq += 1
        self._last_sent = asyncio.get_running_loop().time()
        await self._nc.publish(self._subject, chunk.SerializeToString())

    async def delta(self, d: Delta) -> None:
        self._texts.append(d.text)
        self._logprobs.extend(d.token_logprobs)
        if d.finish_reason is not None:
            await self._flush(final=_final(d))
            return
        loop = asyncio.get_running_loop()
        wait_s = self._last_sent + self._interval_s - loop.time()
        if wait_s <= 0:
            await self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(wait_s, self._on_timer)

    async def fail(self, exc: CascadeError) -> None:
        await self._flush()  # what was gathered goes first, as it would have without gathering
        await self.send(
            events_pb2.TokenChunk(final=True, finish_reason=common_pb2.FINISH_REASON_ERROR, error=error_info(exc))
        )

    def close(self) -> None:
        """Stop the flush timer (the answer ended or was cancelled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._flushing = asyncio.ensure_future(self._after(self._flushing))

    async def _after(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous
        await self._send_gathered(None)

    async def _flush(self, *, final: events_pb2.TokenChunk | None = None) -> None:
        self.close()
        if self._flushing is not None:  # the timer's flush goes first
            await self._flushing
            self._flushing = None
        await self._send_gathered(final)

    async def _send_gathered(self, final: events_pb2.TokenChunk | None) -> None:
        if not self._texts and final is None:
            return
        chunk = final if final is not None else events_pb2.TokenChunk()
        chunk.text = "".join(self._texts)
        chunk.token_logprobs.extend(self._logprobs)
        self._texts, self._logprobs = [], []
        await self.send(chunk)


def _final(d: Delta) -> events_pb2.TokenChunk:
    chunk = events_pb2.TokenChunk(
        final=True,
        finish_reason=FINISH_REASONS.get(d.finish_reason or "stop", common_pb2.FINISH_REASON_STOP),
        usage=common_pb2.Usage(
            input_tokens=d.input_tokens or 0, output_tokens=d.output_tokens or 0, estimated=d.usage_estimated
        ),
    )
    if d.replay_score is not None:
        chunk.replay_score = d.replay_score
    chunk.samples.extend(_sample(s) for s in d.samples)
    return chunk


def _sample(sample: SampleAnswer) -> events_pb2.Sample:
    return events_pb2.Sample(
        text=sample.text,
        token_logprobs=sample.token_logprobs,
        finish_reason=FINISH_REASONS.get(sample.finish_reason, common_pb2.FINISH_REASON_STOP),
    )
