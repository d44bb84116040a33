"""gRPC edge of the gateway: wire messages in and out, the Cascade does the work."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from services.core import metrics, subjects
from services.core.errors import CascadeError, NotFound, Overloaded
from services.core.settings import CascadeSettings
from services.core.wire import now_timestamp
from services.gateway import wire
from services.gateway.cascade import Cascade
from services.gateway.domain import TextChunk
from services.gateway.record import RequestRecord
from services.gateway.requests import CascadeRequest, parse_feedback, parse_generate
from services.outcomes import OutcomePublisher, SeenRequests


class CascadeServicer(cascade_pb2_grpc.CascadeServicer):
    def __init__(
        self, *, cascade: Cascade, outcomes: OutcomePublisher, seen: SeenRequests, settings: CascadeSettings
    ) -> None:
        self._cascade, self._outcomes, self._seen, self._settings = cascade, outcomes, seen, settings
        self._in_flight = 0

    async def Generate(  # noqa: N802 - gRPC method name
        self, request: cascade_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> cascade_pb2.GenerateResponse:
        texts: list[str] = []
        async for item in self._run(parse_generate(request, self._settings.gateway, streamed=False), context):
            if isinstance(item, TextChunk):
                texts = [] if item.retract else texts
                texts.append(item.text)
            else:
                return cascade_pb2.GenerateResponse(
                    request_id=item.request.request_id, text="".join(texts), **wire.summary(item)
                )
        raise AssertionError("the cascade ended without a record")

    async def GenerateStream(  # noqa: N802
        self, request: cascade_pb2.GenerateRequest, context: aio.ServicerContext
    ) -> AsyncIterator[cascade_pb2.GenerateChunk]:
        parsed = parse_generate(request, self._settings.gateway)
        request_id = parsed.request_id
        async for item in self._run(parsed, context):
            if isinstance(item, TextChunk):
                # Every chunk names its request, so a caller can act on the first one (e.g. cancel, log).
                yield cascade_pb2.GenerateChunk(
                    request_id=request_id, text=item.text, tier=item.tier, retract=item.retract
                )
            else:
                yield cascade_pb2.GenerateChunk(
                    request_id=request_id, tier=item.route.tier, final=True, **wire.summary(item)
                )

    async def Feedback(  # noqa: N802
        self, request: cascade_pb2.FeedbackRequest, context: aio.ServicerContext
    ) -> cascade_pb2.FeedbackResponse:
        fb = parse_feedback(request)
        if not await self._seen.seen(fb.request_id):
            window = self._settings.outcomes.feedback_window_s
            raise NotFound(f"no request {fb.request_id!r} within the feedback window ({window:g}s)")
        event = events_pb2.FeedbackEvent(
            schema_version=1,
            request_id=fb.request_id,
            time=now_timestamp(),
            score=fb.score,
            comment=fb.comment,
            tenant=fb.tenant,
        )
        digest = hashlib.sha256(f"{fb.score!r}\0{fb.comment}".encode()).hexdigest()[:16]
        accepted = await self._outcomes.publish_now(
            subjects.FEEDBACK, f"feedback:{fb.request_id}:{digest}", event.SerializeToString()
        )
        return cascade_pb2.FeedbackResponse(accepted=accepted)

    async def _run(
        self, parsed: CascadeRequest, context: aio.ServicerContext
    ) -> AsyncIterator[TextChunk | RequestRecord]:
        if self._in_flight >= self._settings.gateway.max_in_flight:
            refused = {"tier": "none", "policy": parsed.policy, "status": "RESOURCE_EXHAUSTED"}
            metrics.REQUEST_DURATION.record(0.0, refused)  # a request too: its count is the request count
            raise Overloaded(f"gateway is at its limit of {self._settings.gateway.max_in_flight} requests")
        remaining = context.time_remaining()
        timeout_s = remaining if remaining is not None else self._settings.gateway.default_timeout_s
        self._in_flight += 1
        try:
            # The caller's trace is already the current context: the interceptor continued it.
            # The caller hears how its request ended only once the outcome's record is written to the
            # spool (the kernel's page cache survives the process): a SIGKILL right after the answer
            # must not lose its outcome (bench.chaos).
            async for item in self._cascade.run(parsed, timeout_s=timeout_s):
                if isinstance(item, RequestRecord):
                    self._outcomes.settled()
                yield item
        except CascadeError:
            self._outcomes.settled()
            raise
        finally:
            self._in_flight -= 1
