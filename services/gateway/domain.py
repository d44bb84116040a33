"""The cascade's own values: what it asks the router and the tiers, and what it learns from them.

Plain dataclasses; protobuf is built and parsed only at the edges (clients.py, wire.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from services.tier.backends import Message

POLICIES = ("cascade", "route", "small", "large")


class Reason(enum.StrEnum):
    """Why a request took its path (``cascade.v1.PathReason`` by name)."""

    POLICY = "policy"
    ROUTED = "routed"
    ROUTED_LARGE = "routed_large"
    ROUTER_FALLBACK = "router_fallback"
    CONFIDENT = "confident"
    LOW_CONFIDENCE = "low_confidence"
    DISAGREEMENT = "disagreement"
    SMALL_ERROR = "small_error"
    BUDGET = "budget"
    NO_ESCALATION = "no_escalation"
    TIER_DOWN = "tier_down"


class Purpose(enum.StrEnum):
    """Why a tier was asked (``TierAttempt.purpose``)."""

    ANSWER = "answer"
    SECOND_OPINION = "second_opinion"
    ESCALATION = "escalation"
    SHADOW = "shadow"  # exploration: another tier answered in the background, never returned


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The router's answer: a starting tier and how it was chosen."""

    tier: str
    score: float = 0.0
    threshold: float = 0.0
    model_version: str = ""
    error: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class TierCall:
    """What one tier is asked to do."""

    request_id: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None
    stop: tuple[str, ...]
    deadline_unix_ms: int
    want_logprobs: bool = True
    # Answers to sample in one call (self-consistency); a tier that cannot sample answers once.
    n: int = 1
    # Tokens gathered per chunk message (TierRequest.chunk_interval_ms); 0: one message per token.
    chunk_interval_ms: int = 0
    hold_first_token: bool = False  # the first token waits for its interval too (a unary caller)


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            estimated=self.estimated or other.estimated,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Piece:
    """One piece of a tier's streamed answer; the final one carries usage and the other samples."""

    text: str = ""
    logprobs: tuple[float, ...] = ()
    final: bool = False
    finish_reason: str = ""  # "stop", "length" or "error" (final piece only)
    usage: Usage = Usage()
    replay_score: float | None = None
    samples: tuple[str, ...] = ()
    # Who answered, as the tier worker announced it (final piece only): backend kind and model name.
    backend: str = ""
    model: str = ""


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Text for the caller; ``retract`` withdraws everything sent before it (speculative streams)."""

    text: str
    tier: str
    retract: bool = False


@dataclass(kw_only=True)
class Route:
    """How a request was routed and answered (``cascade.v1.RouteSummary``), filled in as it runs."""

    policy: str
    tier: str = ""
    tiers_tried: list[str] = field(default_factory=list)
    escalated: bool = False
    router_score: float = 0.0
    router_threshold: float = 0.0
    router_model_version: str = ""
    router_error: str = ""
    reason: Reason | None = None
    confidence: float | None = None
    confidence_threshold: float | None = None
    agreement: float | None = None
    samples: int = 0
    second_opinion_tier: str = ""
    confidence_model_version: str = ""
    budget_limited: bool = False
    # The tier whose circuit breaker kept the request below it (gateway.on_tier_down: small).
    tier_down: str = ""
