"""NATS edge of a tier: TierRequest in, TierAccept back, then TokenChunks to the caller's subject."""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects
from services.core.errors import CascadeError, DeadlineExceeded, InternalError, InvalidRequest, Overloaded
from services.core.payloads import DEFAULT_MAX_PAYLOAD, check_size, decode, is_inbox
from services.core.settings import TierSettings
from services.core.telemetry import extract_context, tracer
from services.core.wire import FINISH_REASONS, error_info
from services.tier.backends import Delta, Generation, Message, SampleAnswer, TierBackend, create_backend

log = logging.getLogger(__name__)
# Samples per request (vLLM's `n`): beyond a handful, agreement gains little and the call costs n times.
MAX_SAMPLES = 16


class ChunkSender:
    """Numbers and publishes one answer's chunks."""

    def __init__(self, nc: NatsClient, request: events_pb2.TierRequest, tier: str) -> None:
        self._nc, self._subject, self._tier = nc, request.chunk_subject, tier
        self._request_id = request.request_id
        self._seq = 0

    async def send(self, chunk: events_pb2.TokenChunk) -> None:
        chunk.request_id, chunk.tier, chunk.seq = self._request_id, self._tier, self._seq
        self._seq += 1
        await self._nc.publish(self._subject, chunk.SerializeToString())

    async def delta(self, d: Delta) -> None:
        chunk = events_pb2.TokenChunk(text=d.text, token_logprobs=d.token_logprobs)
        if d.finish_reason is not None:
            chunk.final = True
            chunk.finish_reason = FINISH_REASONS.get(d.finish_reason, common_pb2.FINISH_REASON_STOP)
            chunk.usage.CopyFrom(
                common_pb2.Usage(
                    input_tokens=d.input_tokens or 0,
                    output_tokens=d.output_tokens or 0,
                    estimated=d.usage_estimated,
                )
            )
            if d.replay_score is not None:
                chunk.replay_score = d.replay_score
            chunk.samples.extend(_sample(s) for s in d.samples)
        await self.send(chunk)

    async def fail(self, exc: CascadeError) -> None:
        await self.send(
            events_pb2.TokenChunk(final=True, finish_reason=common_pb2.FINISH_REASON_ERROR, error=error_info(exc))
        )


def generation_from(request: events_pb2.TierRequest, timeout_s: float) -> Generation:
    return Generation(
        request_id=request.request_id,
        messages=[Message(role=m.role, content=m.content) for m in request.messages],
        max_tokens=request.max_tokens,
        temperature=request.temperature if request.HasField("temperature") else None,
        stop=tuple(request.stop),
        want_logprobs=request.want_logprobs,
        timeout_s=timeout_s,
        n=max(request.n, 1),
    )


def _sample(sample: SampleAnswer) -> events_pb2.Sample:
    return events_pb2.Sample(
        text=sample.text,
        token_logprobs=sample.token_logprobs,
        finish_reason=FINISH_REASONS.get(sample.finish_reason, common_pb2.FINISH_REASON_STOP),
    )


class TierWorker:
    def __init__(
        self,
        *,
        nc: NatsClient,
        tier: str,
        settings: TierSettings,
        backend: TierBackend | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._nc, self.tier, self._settings = nc, tier, settings
        self._max_payload = max_payload_bytes
        self.backend = backend or create_backend(settings)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._subs: list = []

    async def start(self) -> None:
        self._subs = [
            await self._nc.subscribe(
                subjects.tier_subject(self.tier), queue=subjects.tier_queue(self.tier), cb=self.handle_request
            ),
            await self._nc.subscribe(subjects.CANCEL, cb=self.handle_cancel),
        ]
        log.info("tier %s serving through %s backend (model %s)", self.tier, self.backend.kind, self.backend.model)

    async def stop(self, *, grace_s: float = 30.0) -> None:
        """Stop taking requests, let those in flight finish (up to ``grace_s``), then close."""
        for sub in self._subs:
            await sub.unsubscribe()
        if self._tasks:
            log.info("tier %s waiting for %d requests in flight", self.tier, len(self._tasks))
            _, pending = await asyncio.wait(list(self._tasks.values()), timeout=grace_s)
            for task in pending:
                task.cancel()
        await self.backend.aclose()

    async def handle_request(self, msg: Msg) -> None:
        """The tier subject's callback: a TierAccept (or a refusal naming why) to every request with a reply."""
        if not msg.reply:  # nobody to accept to or refuse to: a TierRequest is always a NATS request
            log.warning("tier %s dropped a message without a reply subject (%d bytes)", self.tier, len(msg.data))
            return
        if not msg.data:  # a liveness probe (`cascade up` sends these): say who serves this tier
            probe = events_pb2.TierAccept(tier=self.tier, backend=self.backend.kind, model=self.backend.model)
            await msg.respond(probe.SerializeToString())
            return
        try:
            request = self._admit(msg.data)
        except CascadeError as exc:
            log.warning("tier %s refused a request: %s", self.tier, exc.message)
            await msg.respond(events_pb2.TierAccept(tier=self.tier, error=error_info(exc)).SerializeToString())
            return
        accept = events_pb2.TierAccept(
            request_id=request.request_id, tier=self.tier, backend=self.backend.kind, model=self.backend.model
        )
        await msg.respond(accept.SerializeToString())
        task = asyncio.create_task(self._serve(request, msg.headers))
        self._tasks[request.request_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request.request_id, None))

    def _admit(self, data: bytes) -> events_pb2.TierRequest:
        request = decode(events_pb2.TierRequest, data, limit=self._max_payload)
        if not request.request_id or not request.chunk_subject or not request.messages:
            raise InvalidRequest("TierRequest needs request_id, chunk_subject and messages")
        if not is_inbox(request.chunk_subject):
            raise InvalidRequest(f"TierRequest.chunk_subject {request.chunk_subject[:64]!r} is not an _INBOX subject")
        if request.request_id in self._tasks:
            raise InvalidRequest(f"request {request.request_id[:128]!r} is already being served by tier {self.tier}")
        if request.n > MAX_SAMPLES:
            raise InvalidRequest(f"TierRequest asks for {request.n} samples; at most {MAX_SAMPLES}")
        if len(self._tasks) >= self._settings.max_concurrency:
            raise Overloaded(f"tier {self.tier} is at its limit of {self._settings.max_concurrency} requests")
        if _seconds_left(request) <= 0:
            raise DeadlineExceeded("deadline passed before the tier started")
        return request

    async def handle_cancel(self, msg: Msg) -> None:
        """The CANCEL subscription's callback: the payload is a request id (anything else matches no task)."""
        try:
            check_size("a cancel", msg.data, limit=1024)  # request ids are at most 128 characters
        except CascadeError as exc:
            log.warning("tier %s ignored a cancel: %s", self.tier, exc.message)
            return
        task = self._tasks.get(msg.data.decode(errors="replace"))
        if task:
            task.cancel()

    async def _serve(self, request: events_pb2.TierRequest, headers: dict[str, str] | None) -> None:
        sender = ChunkSender(self._nc, request, self.tier)
        timeout_s = _seconds_left(request)
        span = tracer(__name__).start_span(f"tier.{self.tier}", context=extract_context(headers))
        try:
            async with asyncio.timeout(timeout_s):
                await self._stream(sender, generation_from(request, timeout_s))
        except TimeoutError:
            await sender.fail(DeadlineExceeded(f"tier {self.tier} ran past the deadline"))
        except CascadeError as exc:
            log.warning("tier %s request %s failed: %s", self.tier, request.request_id, exc.message)
            await sender.fail(exc)
        except asyncio.CancelledError:
            log.info("tier %s request %s cancelled by the caller", self.tier, request.request_id)
        except Exception:
            log.exception("tier %s request %s: unexpected failure", self.tier, request.request_id)
            await sender.fail(InternalError(f"tier {self.tier} failed unexpectedly"))
        finally:
            span.end()

    async def _stream(self, sender: ChunkSender, generation: Generation) -> None:
        async for delta in self.backend.stream(generation):
            await sender.delta(delta)
            if delta.finish_reason is not None:
                return
        raise InternalError(f"tier {self.tier} backend ended without a finish reason")


def _seconds_left(request: events_pb2.TierRequest) -> float:
    if not request.deadline_unix_ms:
        return 3600.0
    return request.deadline_unix_ms / 1e3 - time.time()
