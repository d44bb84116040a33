"""Wire <-> SDK conversion: protobuf messages in, frozen dataclasses out, and back.

The only module of the SDK that touches message fields; the clients just call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from cascade.v1 import cascade_pb2, common_pb2
from services.core.errors import InvalidRequest
from services.sdk.types import ChatMessage, GenerateResult, Policy, Route, StreamChunk, Timings, Usage

MessageLike = ChatMessage | Mapping[str, str]

_POLICY_TO_WIRE: dict[Policy, int] = {
    Policy.CASCADE: cascade_pb2.POLICY_CASCADE,
    Policy.AUTO: cascade_pb2.POLICY_CASCADE,
    Policy.ROUTE: cascade_pb2.POLICY_ROUTE,
    Policy.SMALL: cascade_pb2.POLICY_SMALL,
    Policy.LARGE: cascade_pb2.POLICY_LARGE,
}
_FINISH_PREFIX = "FINISH_REASON_"
_REASON_PREFIX = "PATH_REASON_"
_POLICY_ERROR = "policy must be 'cascade', 'route', 'small', 'large' or 'auto' (= 'cascade')"


def policy_to_wire(policy: Policy | str | int | None) -> cascade_pb2.Policy:
    """A policy name (any case; "auto" means "cascade"), a :class:`Policy`, a ``cascade_pb2.Policy``
    value, or None (the gateway's default policy)."""
    if policy is None:
        return cascade_pb2.POLICY_UNSPECIFIED
    if isinstance(policy, str):
        try:
            return cast(cascade_pb2.Policy, _POLICY_TO_WIRE[Policy(policy.strip().lower())])
        except ValueError:
            raise InvalidRequest(f"unknown policy {policy!r}; {_POLICY_ERROR}") from None
    if isinstance(policy, int) and not isinstance(policy, bool) and policy in cascade_pb2.Policy.values():
        return cast(cascade_pb2.Policy, policy)
    raise InvalidRequest(f"{_POLICY_ERROR}, not {policy!r}")


def _message_to_wire(message: MessageLike) -> common_pb2.ChatMessage:
    if isinstance(message, ChatMessage):
        return common_pb2.ChatMessage(role=message.role, content=message.content)
    if isinstance(message, Mapping) and set(message) == {"role", "content"}:
        return common_pb2.ChatMessage(role=message["role"], content=message["content"])
    raise InvalidRequest(f"a message must be a ChatMessage or a dict with 'role' and 'content': {message!r}")


def generate_request(
    prompt: str | None,
    *,
    messages: Sequence[MessageLike] | None,
    max_tokens: int,
    temperature: float | None,
    stop: str | Sequence[str],
    policy: Policy | str | int | None,
    tenant: str,
    tags: Mapping[str, str] | None,
    request_id: str,
    speculative: bool = False,
) -> cascade_pb2.GenerateRequest:
    """The wire request for ``generate``/``stream``; raises InvalidRequest before any call."""
    if (prompt is None) == (messages is None):
        raise InvalidRequest("pass exactly one of `prompt` or `messages`")
    request = cascade_pb2.GenerateRequest(policy=policy_to_wire(policy))
    try:
        if prompt is not None:
            request.prompt = prompt
        else:
            request.messages.extend(_message_to_wire(m) for m in messages or ())
        request.max_tokens = max_tokens
        if temperature is not None:
            request.temperature = temperature
        request.stop.extend([stop] if isinstance(stop, str) else stop)
        request.tenant = tenant
        request.tags.update(tags or {})
        request.request_id = request_id
        if speculative:
            request.stream_mode = cascade_pb2.STREAM_MODE_SPECULATIVE
    except (TypeError, ValueError) as exc:  # wrong types or out-of-range numbers
        raise InvalidRequest(f"invalid request: {exc}") from exc
    return request


def feedback_request(request_id: str, score: float, *, comment: str, tenant: str) -> cascade_pb2.FeedbackRequest:
    """The wire request for ``feedback``."""
    try:
        return cascade_pb2.FeedbackRequest(request_id=request_id, score=score, comment=comment, tenant=tenant)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"invalid feedback: {exc}") from exc


def finish_reason_from_wire(value: int) -> str:
    """FINISH_REASON_STOP -> "stop"; numbers newer than this SDK -> "unspecified"."""
    try:
        name = common_pb2.FinishReason.Name(value)
    except ValueError:
        return "unspecified"
    return name.removeprefix(_FINISH_PREFIX).lower()


def _policy_name(route: common_pb2.RouteSummary) -> str:
    """The applied policy's name ("cascade", ...): from the enum, or an older gateway's string."""
    if route.applied_policy == common_pb2.POLICY_UNSPECIFIED:
        return route.policy
    return common_pb2.Policy.Name(route.applied_policy).removeprefix("POLICY_").lower()


def route_from_wire(route: common_pb2.RouteSummary) -> Route:
    return Route(
        tier=route.tier,
        tiers_tried=tuple(route.tiers_tried),
        escalated=route.escalated,
        router_score=route.router_score,
        router_threshold=route.router_threshold,
        router_model_version=route.router_model_version,
        confidence=route.confidence if route.HasField("confidence") else None,
        policy=_policy_name(route),
        router_error=route.router_error,
        reason=_reason(route.reason),
        confidence_threshold=route.confidence_threshold if route.HasField("confidence_threshold") else None,
        agreement=route.agreement if route.HasField("agreement") else None,
        samples=route.samples,
        second_opinion_tier=route.second_opinion_tier,
        confidence_model_version=route.confidence_model_version,
        budget_limited=route.budget_limited,
        tier_down=route.tier_down,
    )


def _reason(value: int) -> str:
    """PATH_REASON_LOW_CONFIDENCE -> "low_confidence"; unset or newer than this SDK -> ""."""
    try:
        name = common_pb2.PathReason.Name(value)
    except ValueError:
        return ""
    return "" if value == 0 else name.removeprefix(_REASON_PREFIX).lower()


def usage_from_wire(usage: common_pb2.Usage) -> Usage:
    return Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, estimated=usage.estimated)


def timings_from_wire(timings: common_pb2.StageTimings) -> Timings:
    return Timings(
        route_ms=timings.route_ms,
        first_token_ms=timings.first_token_ms,
        small_ms=timings.small_ms,
        large_ms=timings.large_ms,
        total_ms=timings.total_ms,
    )


def result_from_wire(response: cascade_pb2.GenerateResponse) -> GenerateResult:
    return GenerateResult(
        request_id=response.request_id,
        text=response.text,
        finish_reason=finish_reason_from_wire(response.finish_reason),
        route=route_from_wire(response.route),
        usage=usage_from_wire(response.usage),
        cost_usd=response.cost_usd,
        timings=timings_from_wire(response.timings),
    )


def chunk_from_wire(chunk: cascade_pb2.GenerateChunk) -> StreamChunk:
    if not chunk.final:
        return StreamChunk(request_id=chunk.request_id, text=chunk.text, tier=chunk.tier, retract=chunk.retract)
    return StreamChunk(
        request_id=chunk.request_id,
        text=chunk.text,
        tier=chunk.tier,
        final=True,
        finish_reason=finish_reason_from_wire(chunk.finish_reason),
        route=route_from_wire(chunk.route),
        usage=usage_from_wire(chunk.usage),
        cost_usd=chunk.cost_usd,
        timings=timings_from_wire(chunk.timings),
    )
