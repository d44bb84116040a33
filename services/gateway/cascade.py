"""The cascade: route a request, answer it on a tier, escalate a weak small answer, record the outcome.

Plain logic over injected parts (router, tiers, confidence model, outcome sink) and plain values
(services/gateway/domain.py), so it is tested without a socket or a protobuf.

Tiers are ``router.tiers``, cheapest first (two by default: small, large). Policies: ``cascade``
(the router picks the starting tier; an answer below the top escalates one step up when its
confidence is below that step's threshold, see small.py), ``route`` (route, never escalate),
``small`` (the cheapest tier) and ``large`` (the top tier). An answer that may escalate is held
until its confidence is known (HELD streams), or streamed live and retracted if it escalates
(SPECULATIVE streams). Exploration (explore.py) may invert the router's decision (``_start``) or
answer on the other tier in the background after the request (``_finish``, which then leaves the
outcome to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from classifier.confidence import ConfidenceModel
from services.core.calibration import CalibrationFile
from services.core.errors import Cancelled, CascadeError, DeadlineExceeded, Overloaded, Unavailable
from services.core.logs import REQUEST_ID
from services.core.settings import CascadeSettings
from services.core.telemetry import span
from services.gateway import escalation
from services.gateway.breaker import Breakers, BreakerTiers
from services.gateway.budget import Budgets
from services.gateway.domain import Decision, Piece, Reason, TextChunk, TierCall
from services.gateway.explore import Exploration
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import CascadeRequest
from services.gateway.small import SmallFirst  # the escalating path of policy cascade

log = logging.getLogger(__name__)

__all__ = ["Cascade", "Router", "TextChunk", "Tiers"]


class Router(Protocol):
    async def route(self, *, request_id: str, text: str, timeout_s: float) -> Decision: ...


class Tiers(Protocol):
    def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]: ...


OutcomeSink = Callable[[RequestRecord], None]


class Cascade:
    def __init__(
        self,
        *,
        router: Router,
        tiers: Tiers,
        record_outcome: OutcomeSink,
        settings: CascadeSettings,
        confidence: ConfidenceModel,
        calibration: CalibrationFile | None = None,
        budgets: Budgets | None = None,
        exploration: Exploration | None = None,
        breakers: Breakers | None = None,
        on_start: OutcomeSink | None = None,
    ) -> None:
        """``on_start``: told of each request's record as it starts (the gateway holds a provisional outcome)."""
        self._on_start = on_start
        # Every tier call (answers, second opinions, shadows) goes through the tier's circuit breaker.
        self.breakers = breakers or Breakers(settings.gateway.breaker, settings.tiers)
        self._router, self._record_outcome = router, record_outcome
        self._tiers = BreakerTiers(tiers, self.breakers)
        # Public to the escalating path (small.py), which is this class's other half.
        self.settings, self.confidence, self.calibration = settings, confidence, calibration
        self._budgets = budgets or Budgets(settings.gateway.budgets)
        self._prices = {name: t.price for name, t in settings.tiers.items()}
        self._ladder = settings.router.tiers  # cheapest first; the last is "large" to budgets and records
        # Public: the gateway waits for its shadows at shutdown.
        self.exploration = exploration or Exploration(settings.exploration, ladder=self._ladder, tiers=self._tiers)

    async def run(self, request: CascadeRequest, *, timeout_s: float) -> AsyncIterator[TextChunk | RequestRecord]:
        """Yield the answer's text chunks, then the finished RequestRecord. Raises CascadeError.

        The request's span is a child of the current one: the interceptor's server span, which
        continues the caller's trace (gRPC metadata).
        """
        record = RequestRecord(request=request, prices=self._prices, large_tier=self._ladder[-1], ladder=self._ladder)
        if self._on_start is not None:
            self._on_start(record)
        deadline = time.time() + timeout_s
        # Our own timer fires a little before the caller's gRPC deadline, so the request ends as
        # DEADLINE_EXCEEDED with our message rather than as a cancellation racing gRPC's.
        # The margin covers the trip back: gRPC's deadline here starts when the request arrived, later than
        # the caller's (by 50-300 ms on a loaded machine, bench.chaos), so a smaller one let the caller's
        # own deadline fire first, and the caller saw no answer from the gateway at all.
        margin = min(0.25, timeout_s * 0.1)
        with span(__name__, "cascade.request") as current:
            REQUEST_ID.set(request.request_id)  # this handler's log records name the request
            current.set_attribute("cascade.request_id", request.request_id)
            current.set_attribute("cascade.policy", request.policy)
            try:
                async with asyncio.timeout(timeout_s - margin):
                    async for chunk in self._answer(request, record, deadline):
                        yield chunk
            except TimeoutError:
                record.error = DeadlineExceeded(f"no complete answer within the deadline of {timeout_s:.3f}s")
                raise record.error from None
            except CascadeError as exc:
                record.error = exc
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # gRPC cancels the handler at the deadline too: that is a deadline, not a caller's cancel.
                late = time.time() >= deadline - margin
                record.error = DeadlineExceeded("the deadline passed") if late else Cancelled("the caller cancelled")
                raise
            finally:
                self._finish(record)
                if current.is_recording():  # building the attributes costs; a no-op span skips it
                    current.set_attributes(record.span_attributes())
        yield record

    def _finish(self, record: RequestRecord) -> None:
        record.finished = time.perf_counter()
        request = record.request
        self._budgets.record(request.tenant, used_large=record.used_large, large_usd=record.large_cost_usd())
        # The outcome is published here, or by a shadow answer once it ends (exploration, mode shadow).
        shadow_call = self.tier_call(request, time.time() + self.settings.exploration.shadow_timeout_s)
        self.exploration.finish(request, record, publish=self._record_outcome, call=shadow_call)

    async def _answer(
        self, request: CascadeRequest, record: RequestRecord, deadline: float
    ) -> AsyncIterator[TextChunk]:
        tier = await self._start(request, record, deadline)
        if self._may_escalate(request, record, tier):
            stream = self._small_first(request, record, tier, deadline)
        else:
            stream = self._single(request, record, tier, deadline)
        async for chunk in stream:
            yield chunk

    async def _start(self, request: CascadeRequest, record: RequestRecord, deadline: float) -> str:
        """The starting tier, with the reason for it; asks the router for policies cascade and route."""
        ladder, route = self._ladder, record.route
        if request.policy in ("small", "large"):
            route.reason = Reason.POLICY  # an explicit tier never moves: a down one fails at once
            return ladder[0] if request.policy == "small" else ladder[-1]
        decision = await self._route(request, record, deadline)
        tier = decision.tier if decision.tier in ladder else self.settings.router.fallback_tier
        if decision.error or decision.tier != tier:
            route.reason = Reason.ROUTER_FALLBACK
        elif request.policy == "cascade" and tier == ladder[-1]:
            route.reason = Reason.ROUTED_LARGE
        else:
            route.reason = Reason.ROUTED
        tier = self.exploration.route(request, record, tier)  # exploration "against" inverts the decision
        if tier == ladder[-1] != ladder[0] and self.budget_says_small(request, record):
            record.exploration = ""  # the tenant's budget wins over exploration
            return ladder[0]
        if self.tier_down_keeps_below(request, record, tier):  # last: a tier it lets through is used next
            record.exploration = ""
            return ladder[0]
        return tier

    async def _route(self, request: CascadeRequest, record: RequestRecord, deadline: float) -> Decision:
        start = time.perf_counter()
        try:
            decision = await self._router.route(
                request_id=request.request_id,
                text=request.routed_text,
                # The router's answer is no use past the caller's deadline.
                timeout_s=max(0.001, min(self.settings.gateway.route_timeout_s, deadline - time.time())),
            )
        except Unavailable as exc:
            fallback = self.settings.router.fallback_tier
            log.warning("request %s: %s; using the fallback tier %s", request.request_id, exc.message, fallback)
            decision = Decision(tier=fallback, error=exc.message)
        record.route_ms = (time.perf_counter() - start) * 1e3
        route = record.route
        route.router_score, route.router_threshold = decision.score, decision.threshold
        route.router_model_version, route.router_error = decision.model_version, decision.error
        return decision

    def budget_says_small(self, request: CascadeRequest, record: RequestRecord) -> bool:
        """True when the tenant's budget keeps this request off the large (top) tier; raises when it must fail."""
        spent = self._budgets.spent(request.tenant)
        if spent is None:
            return False
        if spent.on_exceeded == "fail":
            raise Overloaded(spent.message)
        log.info("request %s: %s; answering on the small tier", request.request_id, spent.message)
        record.route.reason, record.route.budget_limited = Reason.BUDGET, True
        return True

    def tier_down_keeps_below(self, request: CascadeRequest, record: RequestRecord, tier: str) -> bool:
        """True when ``tier``'s breaker is open and gateway.on_tier_down is small: the request stays below it.

        With on_tier_down: fail the request goes on, and the tier client refuses the call at once.
        """
        if tier == self._ladder[0] or self.settings.gateway.on_tier_down == "fail":
            return False
        if self.breakers.enter(tier, request.request_id):
            return False
        log.info("request %s: %s; answering below it", request.request_id, self.breakers[tier].error().message)
        record.route.reason, record.route.tier_down = Reason.TIER_DOWN, tier
        return True

    def _may_escalate(self, request: CascadeRequest, record: RequestRecord, tier: str) -> bool:
        if request.policy != "cascade" or tier not in self._ladder or tier == self._ladder[-1]:
            return False
        if record.route.budget_limited or record.route.tier_down:
            return False
        if not self.settings.escalation.enabled or self.settings.max_escalations < 1:
            if record.route.reason == Reason.ROUTED:
                record.route.reason = Reason.NO_ESCALATION
            return False
        return True

    async def _single(
        self, request: CascadeRequest, record: RequestRecord, tier: str, deadline: float
    ) -> AsyncIterator[TextChunk]:
        """An answer that cannot escalate: streamed as it is generated."""
        attempt = record.begin(tier)
        async for chunk in self.stream_attempt(request, attempt, self.tier_call(request, deadline)):
            record.mark_first_token()
            yield chunk
        self.score_alone(request, record, attempt)
        record.answered_by(attempt)

    async def _small_first(
        self, request: CascadeRequest, record: RequestRecord, tier: str, deadline: float
    ) -> AsyncIterator[TextChunk]:
        async for chunk in SmallFirst(self, request, record, deadline, start=tier).run():
            yield chunk

    def tier_call(self, request: CascadeRequest, deadline: float, *, n: int = 1) -> TierCall:
        sampling, gw = n > 1, self.settings.gateway
        return TierCall(
            request_id=request.request_id,
            messages=request.messages,
            max_tokens=request.max_tokens,
            # Self-consistency needs diverse samples: the configured sampling temperature.
            temperature=self.settings.escalation.sample_temperature if sampling else request.temperature,
            stop=request.stop,
            deadline_unix_ms=int(deadline * 1e3),
            n=n,
            chunk_interval_ms=gw.chunk_interval_ms if request.streamed else gw.unary_chunk_interval_ms,
            hold_first_token=not request.streamed,
        )

    async def stream_attempt(
        self, request: CascadeRequest, attempt: Attempt, call: TierCall
    ) -> AsyncIterator[TextChunk]:
        try:
            async for piece in self._tiers.stream(attempt.tier, call):
                attempt.add(piece)
                if piece.text:
                    yield TextChunk(text=piece.text, tier=attempt.tier)
        except CascadeError as exc:
            attempt.fail(exc)
            raise

    def score_alone(self, request: CascadeRequest, record: RequestRecord, attempt: Attempt) -> None:
        """Confidence of an answer that is not judged against others (it is returned whatever it is)."""
        model = self.confidence  # once: a hot swap between scoring and recording must not mislabel
        escalation.score(
            model,
            prompt=request.routed_text,
            attempt=attempt,
            others=(),
            router_score=record.route.router_score if record.route.router_model_version else None,
        )
        record.route.confidence_model_version = model.version
