"""What every answer of a tier records (tokens, span attributes), whether a worker or the gateway ran it."""

from __future__ import annotations

from opentelemetry.trace import Span

from services.core import metrics
from services.tier.backends import Delta


def count_final(tier: str, model: str, delta: Delta, span: Span) -> None:
    """The answer's final delta: its token counts as metrics, and as attributes of its span."""
    tokens = {"input": delta.input_tokens or 0, "output": delta.output_tokens or 0}
    for kind, n in tokens.items():
        metrics.TIER_TOKENS.add(n, {"tier": tier, "kind": kind})
    if span.is_recording():
        span.set_attributes(
            {
                "cascade.tier": tier,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": tokens["input"],
                "gen_ai.usage.output_tokens": tokens["output"],
                "gen_ai.response.finish_reasons": (delta.finish_reason or "",),
            }
        )
