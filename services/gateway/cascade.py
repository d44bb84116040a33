"""The cascade: route a request, answer it on a tier, escalate a weak small answer, record the outcome.

Plain logic over injected clients (router, tiers, outcome sink), so it is tested without a socket.
Streaming and escalation: when a small-tier answer might still escalate (policy auto, escalation
on), it is held back until its confidence is known, so a client never sees text that is then
withdrawn. Answers that cannot escalate stream through as they are generated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.context import Context

from cascade.v1 import events_pb2
from services.core.errors import Cancelled, CascadeError, DeadlineExceeded, Unavailable
from services.core.settings import CascadeSettings
from services.core.telemetry import tracer
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import CascadeRequest

log = logging.getLogger(__name__)


class Router(Protocol):
    async def route(self, *, request_id: str, text: str, timeout_s: float) -> events_pb2.RouteDecision: ...


class Tiers(Protocol):
    def stream(self, tier: str, request: events_pb2.TierRequest) -> AsyncIterator[events_pb2.TokenChunk]: ...


OutcomeSink = Callable[[events_pb2.OutcomeEvent], None]


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str
    tier: str


class Cascade:
    def __init__(self, *, router: Router, tiers: Tiers, record_outcome: OutcomeSink, settings: CascadeSettings) -> None:
        self._router, self._tiers, self._record_outcome = router, tiers, record_outcome
        self._settings = settings
        self._prices = {name: t.price for name, t in settings.tiers.items()}

    async def run(
        self, request: CascadeRequest, *, timeout_s: float, trace_context: Context | None = None
    ) -> AsyncIterator[TextChunk | RequestRecord]:
        """Yield the answer's text chunks, then the finished RequestRecord. Raises CascadeError.

        ``trace_context``: the caller's trace (from gRPC metadata); the request's span continues it.
        """
        record = RequestRecord(request=request, prices=self._prices, small_tier=self._settings.router.small_tier)
        deadline = time.time() + timeout_s
        with tracer(__name__).start_as_current_span("cascade.request", context=trace_context) as span:
            span.set_attribute("cascade.request_id", request.request_id)
            span.set_attribute("cascade.policy", request.policy)
            try:
                async with asyncio.timeout(timeout_s):
                    first = await self._route(request, record)
                    async for chunk in self._answer(request, record, first, deadline):
                        yield chunk
            except TimeoutError:
                record.error = DeadlineExceeded(f"no complete answer within the deadline of {timeout_s:.3f}s")
                raise record.error from None
            except CascadeError as exc:
                record.error = exc
                raise
            except (asyncio.CancelledError, GeneratorExit):
                record.error = Cancelled("the caller cancelled the request")
                raise
            finally:
                self._record_outcome(record.outcome(store_prompt_text=self._settings.outcomes.store_prompt_text))
        yield record

    async def _route(self, request: CascadeRequest, record: RequestRecord) -> str:
        r = self._settings.router
        if request.policy != "auto":
            return r.small_tier if request.policy == "small" else r.large_tier
        start = time.perf_counter()
        try:
            decision = await self._router.route(
                request_id=request.request_id,
                text=request.routed_text,
                timeout_s=self._settings.gateway.route_timeout_s,
            )
        except Unavailable as exc:
            log.warning("request %s: %s; using the fallback tier %s", request.request_id, exc.message, r.fallback_tier)
            decision = events_pb2.RouteDecision(tier=r.fallback_tier, error=exc.message)
        record.route_ms = (time.perf_counter() - start) * 1e3
        route = record.route
        route.router_score, route.router_threshold = decision.score, decision.threshold
        route.router_model_version, route.router_error = decision.model_version, decision.error
        return decision.tier if decision.tier in self._settings.tiers else r.fallback_tier

    async def _answer(
        self, request: CascadeRequest, record: RequestRecord, tier: str, deadline: float
    ) -> AsyncIterator[TextChunk]:
        esc, r = self._settings.escalation, self._settings.router
        may_escalate = request.policy == "auto" and esc.enabled and tier == r.small_tier != r.large_tier
        attempt = record.begin(tier)
        held: list[TextChunk] = []
        try:
            async for chunk in self._attempt(request, attempt, deadline):
                if may_escalate:
                    held.append(chunk)
                else:
                    record.mark_first_token()
                    yield chunk
        except CascadeError as exc:
            if not (may_escalate and esc.on_error):
                raise
            log.warning("request %s: small tier failed (%s), escalating", request.request_id, exc.message)
        if may_escalate and self._should_escalate(attempt):
            attempt = record.begin(r.large_tier)
            async for chunk in self._attempt(request, attempt, deadline):
                record.mark_first_token()
                yield chunk
        else:
            for chunk in held:
                record.mark_first_token()
                yield chunk
        record.answered_by(attempt)

    def _should_escalate(self, attempt: Attempt) -> bool:
        if attempt.error is not None:
            return True
        confidence = attempt.confidence
        return confidence is not None and confidence < self._settings.escalation.min_confidence

    async def _attempt(self, request: CascadeRequest, attempt: Attempt, deadline: float) -> AsyncIterator[TextChunk]:
        tier_request = events_pb2.TierRequest(
            request_id=request.request_id,
            messages=[{"role": m.role, "content": m.content} for m in request.messages],
            max_tokens=request.max_tokens,
            stop=request.stop,
            want_logprobs=True,
            deadline_unix_ms=int(deadline * 1e3),
        )
        if request.temperature is not None:
            tier_request.temperature = request.temperature
        try:
            async for chunk in self._tiers.stream(attempt.tier, tier_request):
                attempt.add(chunk)
                if chunk.text:
                    yield TextChunk(text=chunk.text, tier=attempt.tier)
        except CascadeError as exc:
            attempt.fail(exc)
            raise
