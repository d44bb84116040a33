"""The SDK's public value types: plain frozen dataclasses, never protobuf objects.

Results are immutable and keyword-only to construct, so fields can be added later
without breaking callers.
"""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

from services.core.errors import InternalError

PemSource: TypeAlias = bytes | str | os.PathLike[str]
"""PEM data given inline as ``bytes``, or as a path (``str`` or ``os.PathLike``) to a PEM file."""


class Policy(enum.StrEnum):
    """Which tiers a request may use. Plain strings are accepted too ("auto" means "cascade")."""

    CASCADE = "cascade"
    """The router picks the starting tier (prompts it is sure are hard go straight to the large
    tier); a small answer whose confidence is below the threshold escalates to the large tier."""
    ROUTE = "route"
    """The router picks the tier; never escalates."""
    SMALL = "small"
    """Always the small tier, never escalates."""
    LARGE = "large"
    """Always the large tier."""
    AUTO = "auto"
    """The former name of :attr:`CASCADE`; sent as CASCADE."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation; ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str) -> ChatMessage:
        """An assistant message (an earlier answer, for multi-turn context)."""
        return cls("assistant", content)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How a request was routed and answered."""

    tier: str = ""
    """Tier that produced the returned answer ("small", "large", ...)."""
    tiers_tried: tuple[str, ...] = ()
    """Every tier that was asked, in order."""
    escalated: bool = False
    """True when a small answer was judged not good enough and the large tier answered."""
    router_score: float = 0.0
    """Router difficulty score in [0, 1]; higher means the large tier is more likely needed."""
    router_threshold: float = 0.0
    """The threshold the score was compared with."""
    router_model_version: str = ""
    """Version of the router model that scored the request."""
    confidence: float | None = None
    """Confidence in the returned answer in [0, 1]; None when no signal was available."""
    policy: str = ""
    """The policy that was applied after defaults ("cascade", "route", "small" or "large")."""
    router_error: str = ""
    """Why the router could not decide (the fallback tier answered); empty when it did."""
    reason: str = ""
    """Why the request took its path: "policy", "routed", "routed_large", "router_fallback",
    "confident", "low_confidence", "disagreement", "small_error", "budget", "no_escalation" or "tier_down"."""
    confidence_threshold: float | None = None
    """The escalation threshold the small answer's confidence was compared with."""
    agreement: float | None = None
    """Share of the other answers (samples, second opinion) agreeing with the small answer."""
    samples: int = 0
    """Answers the small tier sampled for self-consistency (0: no sampling)."""
    second_opinion_tier: str = ""
    """The tier asked for a second opinion, when one was asked."""
    confidence_model_version: str = ""
    """Version of the confidence model that scored the answer."""
    budget_limited: bool = False
    """True when the tenant's large-tier budget kept the request on the small tier."""
    tier_down: str = ""
    """The tier whose circuit breaker was open, so a lower tier answered (reason "tier_down")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts of one request."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    """True when the counts are estimates (e.g. a replay tier has no tokenizer)."""

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Timings:
    """Wall-clock milliseconds spent in each stage of one request."""

    route_ms: float = 0.0
    first_token_ms: float = 0.0
    """Time to the first token of the returned answer."""
    small_ms: float = 0.0
    large_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerateResult:
    """The whole answer to one request, with how it was routed and what it cost."""

    request_id: str
    text: str
    finish_reason: str
    """"stop" (natural end or stop sequence), "length" (max_tokens reached) or "error"."""
    route: Route = field(default_factory=Route)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    timings: Timings = field(default_factory=Timings)

    @classmethod
    def from_chunks(cls, chunks: Iterable[StreamChunk]) -> GenerateResult:
        """Join streamed chunks into one result; the last chunk must be the final one.

        Raises:
            InternalError: the chunks do not end with a final chunk (the stream was cut short).
        """
        texts: list[str] = []
        last: StreamChunk | None = None
        for chunk in chunks:
            if chunk.retract:  # a speculative answer was withdrawn: what follows replaces it
                texts = []
            texts.append(chunk.text)
            last = chunk
        if last is None or not last.final:
            raise InternalError("the stream ended without a final chunk")
        return cls(
            request_id=last.request_id,
            text="".join(texts),
            finish_reason=last.finish_reason or "",
            route=last.route or Route(),
            usage=last.usage or Usage(),
            cost_usd=last.cost_usd or 0.0,
            timings=last.timings or Timings(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamChunk:
    """Text produced since the previous chunk of a stream.

    Only the last chunk has ``final`` set; it alone carries the summary fields
    (``finish_reason``, ``route``, ``usage``, ``cost_usd``, ``timings``), which are
    None on every other chunk. Every chunk, the first included, carries ``request_id``.

    In a speculative stream (``stream(..., speculative=True)``) a chunk with ``retract``
    set withdraws all text received before it; the chunks after it carry the answer
    that replaces it. :func:`collect` and :func:`acollect` apply retractions.
    """

    request_id: str
    text: str
    tier: str
    """The tier that produced this chunk's text."""
    retract: bool = False
    """Discard all text received so far (speculative streams only); this chunk has no text."""
    final: bool = False
    finish_reason: str | None = None
    route: Route | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    timings: Timings | None = None


def collect(chunks: Iterable[StreamChunk]) -> GenerateResult:
    """Consume a (sync) stream and return it as one :class:`GenerateResult`.

    Example: ``result = collect(client.stream("hi"))``.
    """
    return GenerateResult.from_chunks(chunks)


async def acollect(chunks: AsyncIterable[StreamChunk]) -> GenerateResult:
    """Consume an async stream and return it as one :class:`GenerateResult`.

    Example: ``result = await acollect(client.stream("hi"))``.
    """
    return GenerateResult.from_chunks([chunk async for chunk in chunks])


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """TLS settings of a client channel.

    Each of the three PEM values is either the data itself (``bytes``) or a path to a
    file holding it (``str`` or ``os.PathLike``). Leave ``root_certificates`` unset to
    trust the system roots. Give ``private_key`` and ``certificate_chain`` together for
    mutual TLS. ``server_name`` overrides the host name the server certificate is
    checked against (for tests, or when dialling by IP address).
    """

    root_certificates: PemSource | None = None
    private_key: PemSource | None = None
    certificate_chain: PemSource | None = None
    server_name: str | None = None
