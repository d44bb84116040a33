"""What one request did: its route, each tier attempt, timings. Plain data; wire.py builds the events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from services.core.errors import CascadeError
from services.core.settings import PriceSettings
from services.gateway.domain import Piece, Purpose, Route, Usage
from services.gateway.requests import CascadeRequest


@dataclass
class Attempt:
    """One tier's answer (or failure) within a request."""

    tier: str
    purpose: Purpose = Purpose.ANSWER
    started: float = field(default_factory=time.perf_counter)
    texts: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    final: Piece | None = None
    error: CascadeError | None = None
    ended: float | None = None
    # Set by the cascade once the answer is scored by the confidence model.
    confidence: float | None = None
    # The answer returned when self-consistency voted for another sample than the streamed one.
    chosen: str | None = None

    def add(self, piece: Piece) -> None:
        self.texts.append(piece.text)
        self.logprobs.extend(piece.logprobs)
        if piece.final:
            self.final = piece
            self.ended = time.perf_counter()

    def fail(self, exc: CascadeError) -> None:
        self.error = exc
        self.ended = time.perf_counter()

    @property
    def streamed(self) -> str:
        return "".join(self.texts)

    @property
    def text(self) -> str:
        """The answer this attempt gives: the streamed one, or the sample self-consistency chose."""
        return self.streamed if self.chosen is None else self.chosen

    @property
    def samples(self) -> tuple[str, ...]:
        """The other answers sampled beside the streamed one."""
        return self.final.samples if self.final else ()

    @property
    def latency_ms(self) -> float:
        return ((self.ended or time.perf_counter()) - self.started) * 1e3

    def usage(self) -> Usage:
        return self.final.usage if self.final else Usage()

    def cost_usd(self, price: PriceSettings) -> float:
        usage = self.usage()
        return price.cost(usage.input_tokens, usage.output_tokens)


@dataclass
class RequestRecord:
    request: CascadeRequest
    prices: dict[str, PriceSettings]
    large_tier: str
    ladder: tuple[str, ...] = ()  # router.tiers, cheapest first: an attempt's tier_rank
    started: float = field(default_factory=time.perf_counter)
    # When the caller's request ended (the cascade's finish): a shadow that runs on does not count.
    finished: float | None = None
    route: Route = field(init=False)
    route_ms: float = 0.0
    first_token_ms: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    error: CascadeError | None = None
    # "" (none), "shadow" or "against_decision": see services/gateway/explore.py.
    exploration: str = ""

    def __post_init__(self) -> None:
        self.route = Route(policy=self.request.policy)

    def begin(self, tier: str, purpose: Purpose = Purpose.ANSWER) -> Attempt:
        attempt = Attempt(tier=tier, purpose=purpose)
        self.attempts.append(attempt)
        if purpose != Purpose.SECOND_OPINION:  # tiers_tried lists the tiers that could answer
            self.route.tiers_tried.append(tier)
        if purpose == Purpose.ESCALATION:
            self.route.escalated = True  # also when the escalation then fails
        return attempt

    def mark_first_token(self) -> None:
        if not self.first_token_ms:
            self.first_token_ms = (time.perf_counter() - self.started) * 1e3

    def answered_by(self, attempt: Attempt) -> None:
        self.route.tier = attempt.tier
        self.route.confidence = attempt.confidence

    @property
    def answer(self) -> Attempt | None:
        return next(
            (
                a
                for a in reversed(self.attempts)
                if a.tier == self.route.tier and a.purpose not in (Purpose.SECOND_OPINION, Purpose.SHADOW)
            ),
            None,
        )

    def tier_rank(self, tier: str) -> int:
        return self.ladder.index(tier) if tier in self.ladder else 0

    def usage(self) -> Usage:
        """Tokens of every attempt: an escalated request pays for both tiers, for second opinions and shadows."""
        total = Usage()
        for a in self.attempts:
            total = total + a.usage()
        return total

    def cost_usd(self) -> float:
        return sum(a.cost_usd(self.prices[a.tier]) for a in self.attempts)

    def large_cost_usd(self) -> float:
        return sum(a.cost_usd(self.prices[a.tier]) for a in self.attempts if a.tier == self.large_tier)

    @property
    def used_large(self) -> bool:
        return any(a.tier == self.large_tier for a in self.attempts)

    def stage_ms(self) -> tuple[float, float]:
        """Milliseconds on the cheap tiers (answer, samples, second opinions), and on the large tier.

        A shadow is left out: it ran after the caller had the answer.
        """
        timed = [a for a in self.attempts if a.purpose != Purpose.SHADOW]
        large = sum(a.latency_ms for a in timed if a.tier == self.large_tier)
        return sum(a.latency_ms for a in timed) - large, large

    def span_attributes(self) -> dict[str, str | bool | int | float]:
        """What the request's span reports once it ends: path taken, router and confidence, tokens, cost."""
        route, usage = self.route, self.usage()
        attributes: dict[str, str | bool | int | float] = {
            "cascade.tier": route.tier,
            "cascade.tiers_tried": ",".join(route.tiers_tried),
            "cascade.reason": route.reason.value if route.reason is not None else "",
            "cascade.escalated": route.escalated,
            "cascade.router.score": route.router_score,
            "cascade.router.threshold": route.router_threshold,
            "cascade.router.model_version": route.router_model_version,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "cascade.cost_usd": self.cost_usd(),
        }
        if route.escalated:
            attributes["cascade.escalation.reason"] = attributes["cascade.reason"]
        if route.confidence is not None:
            attributes["cascade.confidence"] = route.confidence
        return attributes

    def finish_reason(self) -> str:
        answer = self.answer
        if self.error is not None or answer is None or answer.final is None:
            return "error"
        return answer.final.finish_reason or "stop"
