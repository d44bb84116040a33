"""What one request did: its route, each tier attempt, timings; and the outcome event built from it."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import CascadeError
from services.core.settings import PriceSettings
from services.core.wire import error_info, now_timestamp
from services.gateway.requests import CascadeRequest


@dataclass
class Attempt:
    """One tier's answer (or failure) within a request."""

    tier: str
    started: float = field(default_factory=time.perf_counter)
    texts: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    final: events_pb2.TokenChunk | None = None
    error: CascadeError | None = None
    ended: float | None = None

    def add(self, chunk: events_pb2.TokenChunk) -> None:
        self.texts.append(chunk.text)
        self.logprobs.extend(chunk.token_logprobs)
        if chunk.final:
            self.final = chunk
            self.ended = time.perf_counter()

    def fail(self, exc: CascadeError) -> None:
        self.error = exc
        self.ended = time.perf_counter()

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def confidence(self) -> float | None:
        """Geometric-mean token probability of the answer; None when the tier gave no logprobs."""
        if not self.logprobs:
            return None
        return math.exp(sum(self.logprobs) / len(self.logprobs))

    @property
    def latency_ms(self) -> float:
        return ((self.ended or time.perf_counter()) - self.started) * 1e3

    def usage(self) -> common_pb2.Usage:
        return self.final.usage if self.final else common_pb2.Usage()

    def cost_usd(self, price: PriceSettings) -> float:
        usage = self.usage()
        return price.cost(usage.input_tokens, usage.output_tokens)

    def to_proto(self, price: PriceSettings) -> events_pb2.TierAttempt:
        out = events_pb2.TierAttempt(
            tier=self.tier,
            usage=self.usage(),
            cost_usd=self.cost_usd(price),
            latency_ms=self.latency_ms,
            finish_reason=self.final.finish_reason if self.final else common_pb2.FINISH_REASON_ERROR,
        )
        if self.confidence is not None:
            out.confidence = self.confidence
        if self.error is not None:
            out.error.CopyFrom(error_info(self.error))
        if self.final is not None and self.final.HasField("replay_score"):
            out.replay_score = self.final.replay_score
        return out


@dataclass
class RequestRecord:
    request: CascadeRequest
    prices: dict[str, PriceSettings]
    small_tier: str
    started: float = field(default_factory=time.perf_counter)
    route: common_pb2.RouteSummary = field(default_factory=common_pb2.RouteSummary)
    route_ms: float = 0.0
    first_token_ms: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    error: CascadeError | None = None

    def __post_init__(self) -> None:
        self.route.policy = self.request.policy

    def begin(self, tier: str) -> Attempt:
        attempt = Attempt(tier=tier)
        self.attempts.append(attempt)
        self.route.tiers_tried.append(tier)
        return attempt

    def mark_first_token(self) -> None:
        if not self.first_token_ms:
            self.first_token_ms = (time.perf_counter() - self.started) * 1e3

    def answered_by(self, attempt: Attempt) -> None:
        self.route.tier = attempt.tier
        self.route.escalated = len(self.attempts) > 1
        self.route.ClearField("confidence")
        if attempt.confidence is not None:
            self.route.confidence = attempt.confidence

    @property
    def answer(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.tier == self.route.tier), None)

    def usage(self) -> common_pb2.Usage:
        """Tokens of every attempt: an escalated request pays for both tiers."""
        usages = [a.usage() for a in self.attempts]
        return common_pb2.Usage(
            input_tokens=sum(u.input_tokens for u in usages),
            output_tokens=sum(u.output_tokens for u in usages),
            estimated=any(u.estimated for u in usages),
        )

    def cost_usd(self) -> float:
        return sum(a.cost_usd(self.prices[a.tier]) for a in self.attempts)

    def timings(self) -> common_pb2.StageTimings:
        t = common_pb2.StageTimings(
            route_ms=self.route_ms,
            first_token_ms=self.first_token_ms,
            total_ms=(time.perf_counter() - self.started) * 1e3,
        )
        for a in self.attempts:
            if a.tier == self.small_tier:
                t.small_ms += a.latency_ms
            else:
                t.large_ms += a.latency_ms
        return t

    def finish_reason(self) -> int:
        answer = self.answer
        if self.error is not None or answer is None or answer.final is None:
            return common_pb2.FINISH_REASON_ERROR
        return answer.final.finish_reason

    def outcome(self, *, store_prompt_text: bool) -> events_pb2.OutcomeEvent:
        req = self.request
        event = events_pb2.OutcomeEvent(
            schema_version=1,
            request_id=req.request_id,
            time=now_timestamp(),
            tenant=req.tenant,
            tags=req.tags,
            policy=req.policy,
            prompt_sha256=hashlib.sha256(req.routed_text.encode()).hexdigest(),
            prompt_text=req.routed_text if store_prompt_text else "",
            route=self.route,
            attempts=[a.to_proto(self.prices[a.tier]) for a in self.attempts],
            usage=self.usage(),
            cost_usd=self.cost_usd(),
            timings=self.timings(),
            finish_reason=self.finish_reason(),
            answer_chars=len(self.answer.text) if self.answer and self.error is None else 0,
        )
        if self.error is not None:
            event.error.CopyFrom(error_info(self.error))
        return event
