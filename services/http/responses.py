"""Gateway answers (GenerateResponse, GenerateChunk) as OpenAI response bodies, stream chunks and headers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from cascade.v1 import cascade_pb2, common_pb2

Summary: TypeAlias = cascade_pb2.GenerateResponse | cascade_pb2.GenerateChunk
Kind = Literal["chat", "text"]

_FINISH = {common_pb2.FINISH_REASON_LENGTH: "length"}  # everything else that ends an answer is a "stop"
_OBJECT = {"chat": "chat.completion", "text": "text_completion"}
_CHUNK_OBJECT = {"chat": "chat.completion.chunk", "text": "text_completion"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """What every body of one request shares."""

    kind: Kind
    id: str
    model: str
    created: int

    def wrap(self, *, chunk: bool, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        obj = _CHUNK_OBJECT[self.kind] if chunk else _OBJECT[self.kind]
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices, **extra}


def finish_reason(summary: Summary) -> str:
    return _FINISH.get(summary.finish_reason, "stop")


def usage(summary: Summary) -> dict[str, int]:
    u = summary.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def cascade_extra(summary: Summary) -> dict[str, Any]:
    """The documented extra field ``cascade``: how the request was routed and what it cost."""
    route = summary.route
    return {
        "request_id": summary.request_id,
        "policy": route.policy or None,
        "tier": route.tier,
        "tiers_tried": list(route.tiers_tried),
        "escalated": route.escalated,
        "reason": _reason(route.reason),
        "router_score": route.router_score,
        "router_threshold": route.router_threshold,
        "router_model_version": route.router_model_version or None,
        "router_error": route.router_error or None,
        "confidence": route.confidence if route.HasField("confidence") else None,
        "confidence_threshold": route.confidence_threshold if route.HasField("confidence_threshold") else None,
        "cost_usd": summary.cost_usd,
        "usage_estimated": summary.usage.estimated,
        "timings_ms": {
            "route": summary.timings.route_ms,
            "first_token": summary.timings.first_token_ms,
            "total": summary.timings.total_ms,
        },
    }


def _reason(reason: int) -> str | None:
    if reason == common_pb2.PATH_REASON_UNSPECIFIED:
        return None
    return common_pb2.PathReason.Name(reason).removeprefix("PATH_REASON_").lower()  # type: ignore[arg-type]


def headers(summary: Summary) -> dict[str, str]:
    """``x-cascade-*`` headers of a whole answer (``x-request-id`` too: OpenAI's clients expose it)."""
    route = summary.route
    found = {
        **start_headers(summary.request_id, route.tier),
        "x-cascade-tiers-tried": ",".join(route.tiers_tried),
        "x-cascade-escalated": "true" if route.escalated else "false",
        "x-cascade-policy": route.policy,
        "x-cascade-reason": _reason(route.reason) or "",
        "x-cascade-router-score": f"{route.router_score:.6g}",
        "x-cascade-confidence": f"{route.confidence:.6g}" if route.HasField("confidence") else "",
        "x-cascade-cost-usd": f"{summary.cost_usd:.10f}",
    }
    return {k: v for k, v in found.items() if v}


def start_headers(request_id: str, tier: str) -> dict[str, str]:
    """What a stream's headers can say before the answer is complete."""
    found = {"x-request-id": request_id, "x-cascade-request-id": request_id, "x-cascade-tier": tier}
    return {k: v for k, v in found.items() if v}


def whole(env: Envelope, response: cascade_pb2.GenerateResponse) -> dict[str, Any]:
    if env.kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": response.text}}
    else:
        choice = {"index": 0, "text": response.text}
    choice |= {"logprobs": None, "finish_reason": finish_reason(response)}
    return env.wrap(chunk=False, choices=[choice], usage=usage(response), cascade=cascade_extra(response))


def delta(env: Envelope, text: str, *, first: bool = False) -> dict[str, Any]:
    """A chunk of streamed text; a chat stream's first chunk also names the role, as OpenAI's do."""
    if env.kind == "chat":
        piece: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
        choice: dict[str, Any] = {"index": 0, "delta": piece}
    else:
        choice = {"index": 0, "text": text}
    return env.wrap(chunk=True, choices=[choice | {"logprobs": None, "finish_reason": None}])


def finish(env: Envelope, final: cascade_pb2.GenerateChunk) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": {}} if env.kind == "chat" else {"index": 0, "text": ""}
    choice |= {"logprobs": None, "finish_reason": finish_reason(final)}
    return env.wrap(chunk=True, choices=[choice], cascade=cascade_extra(final))


def usage_chunk(env: Envelope, final: cascade_pb2.GenerateChunk) -> dict[str, Any]:
    """OpenAI's ``stream_options.include_usage`` chunk: no choices, the usage."""
    return env.wrap(chunk=True, choices=[], usage=usage(final), cascade=cascade_extra(final))


def sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
