"""The gateway's wire edge: its plain values <-> cascade.v1 messages (NATS payloads, gRPC replies, events)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, cast

from cascade.v1 import common_pb2, events_pb2
from services.core.errors import CascadeError
from services.core.wire import FINISH_NAMES, FINISH_REASONS, error_info, now_timestamp
from services.gateway.domain import Decision, Piece, Reason, Route, TierCall, Usage
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import POLICIES, CascadeRequest

# Reason.X <-> PATH_REASON_X: the proto's enum is the table, the domain names its members the same.
_REASONS = {r: getattr(common_pb2, f"PATH_REASON_{r.name}") for r in Reason}
# "cascade" -> POLICY_CASCADE, the inverse of the request parser's table.
_POLICY_VALUES = {name: cast(common_pb2.Policy, value) for value, name in POLICIES.items()}


def tier_request(call: TierCall) -> events_pb2.TierRequest:
    out = events_pb2.TierRequest(
        request_id=call.request_id,
        messages=[common_pb2.ChatMessage(role=m.role, content=m.content) for m in call.messages],
        max_tokens=call.max_tokens,
        stop=call.stop,
        want_logprobs=call.want_logprobs,
        deadline_unix_ms=call.deadline_unix_ms,
        n=call.n if call.n > 1 else 0,
        chunk_interval_ms=call.chunk_interval_ms,
        hold_first_token=call.hold_first_token,
    )
    if call.temperature is not None:
        out.temperature = call.temperature
    return out


def piece(chunk: events_pb2.TokenChunk) -> Piece:
    if not chunk.final:
        return Piece(text=chunk.text, logprobs=tuple(chunk.token_logprobs))
    return Piece(
        text=chunk.text,
        logprobs=tuple(chunk.token_logprobs),
        final=True,
        finish_reason=FINISH_NAMES.get(chunk.finish_reason, "stop"),
        usage=usage(chunk.usage),
        replay_score=chunk.replay_score if chunk.HasField("replay_score") else None,
        samples=tuple(s.text for s in chunk.samples),
    )


def decision(msg: events_pb2.RouteDecision) -> Decision:
    return Decision(
        tier=msg.tier, score=msg.score, threshold=msg.threshold, model_version=msg.model_version, error=msg.error
    )


def usage(msg: common_pb2.Usage) -> Usage:
    return Usage(input_tokens=msg.input_tokens, output_tokens=msg.output_tokens, estimated=msg.estimated)


def usage_msg(u: Usage) -> common_pb2.Usage:
    return common_pb2.Usage(input_tokens=u.input_tokens, output_tokens=u.output_tokens, estimated=u.estimated)


def route_summary(route: Route) -> common_pb2.RouteSummary:
    out = common_pb2.RouteSummary(
        tier=route.tier,
        tiers_tried=route.tiers_tried,
        escalated=route.escalated,
        router_score=route.router_score,
        router_threshold=route.router_threshold,
        router_model_version=route.router_model_version,
        policy=route.policy,  # deprecated beside applied_policy; kept for existing subscribers
        applied_policy=_POLICY_VALUES[route.policy],
        router_error=route.router_error,
        samples=route.samples,
        second_opinion_tier=route.second_opinion_tier,
        confidence_model_version=route.confidence_model_version,
        budget_limited=route.budget_limited,
        tier_down=route.tier_down,
    )
    if route.reason is not None:
        out.reason = _REASONS[route.reason]
    for name in ("confidence", "confidence_threshold", "agreement"):
        if (value := getattr(route, name)) is not None:
            setattr(out, name, value)
    return out


def timings(record: RequestRecord) -> common_pb2.StageTimings:
    small_ms, large_ms = record.stage_ms()
    return common_pb2.StageTimings(
        route_ms=record.route_ms,
        first_token_ms=record.first_token_ms,
        small_ms=small_ms,
        large_ms=large_ms,
        total_ms=((record.finished or time.perf_counter()) - record.started) * 1e3,
    )


def summary(record: RequestRecord) -> dict[str, Any]:
    """The fields a GenerateResponse, a stream's final GenerateChunk and an OutcomeEvent share."""
    return {
        "finish_reason": FINISH_REASONS[record.finish_reason()],
        "route": route_summary(record.route),
        "usage": usage_msg(record.usage()),
        "cost_usd": record.cost_usd(),
        "timings": timings(record),
    }


def _same(text: str) -> str:
    return text


def tier_attempt(
    a: Attempt, record: RequestRecord, *, store_answer_text: bool = False, redact: Callable[[str], str] = _same
) -> events_pb2.TierAttempt:
    out = events_pb2.TierAttempt(
        tier=a.tier,
        backend=a.final.backend if a.final else "",
        model=a.final.model if a.final else "",
        usage=usage_msg(a.usage()),
        cost_usd=a.cost_usd(record.prices[a.tier]),
        latency_ms=a.latency_ms,
        finish_reason=FINISH_REASONS[a.final.finish_reason or "stop"] if a.final else common_pb2.FINISH_REASON_ERROR,
        purpose=str(a.purpose),
        samples=1 + len(a.samples) if a.samples else 0,
        tier_rank=record.tier_rank(a.tier),
    )
    if a.confidence is not None:
        out.confidence = a.confidence
    if a.error is not None:
        out.error.CopyFrom(error_info(a.error))
    if a.final is not None and a.final.replay_score is not None:
        out.replay_score = a.final.replay_score
    if store_answer_text and a.final is not None:
        out.text = redact(a.text)
        out.sample_texts.extend(redact(t) for t in a.samples)
    return out


def outcome(
    record: RequestRecord,
    *,
    store_prompt_text: bool,
    store_answer_text: bool = False,
    redact: Callable[[str], str] = _same,
) -> events_pb2.OutcomeEvent:
    """The request's OutcomeEvent; every stored text passes ``redact`` (outcomes.redact) first.

    prompt_sha256 stays the hash of the unredacted routed text: it is the key that joins traffic to
    the benchmark rows and de-duplicates prompts, and a redacted text would give every prompt that
    differs only in an e-mail address or a number the same hash. A hash of a short prompt can be
    guessed by trying candidates; deployments that must rule that out keep prompts off (the default).
    """
    req, answer = record.request, record.answer
    event = events_pb2.OutcomeEvent(
        **_request_fields(req, store_prompt_text=store_prompt_text, redact=redact),
        attempts=[tier_attempt(a, record, store_answer_text=store_answer_text, redact=redact) for a in record.attempts],
        answer_chars=len(answer.text) if answer and record.error is None else 0,
        exploration=record.exploration,
        **summary(record),
    )
    if record.error is not None:
        event.error.CopyFrom(error_info(record.error))
    elif store_answer_text and answer is not None:
        event.answer_text = redact(answer.text)
    return event


def provisional_outcome(
    request: CascadeRequest,
    error: CascadeError,
    *,
    store_prompt_text: bool,
    redact: Callable[[str], str] = _same,
) -> events_pb2.OutcomeEvent:
    """What ``outcome`` gives for a request that has done nothing yet and ends with ``error``: the outcome
    the gateway holds from a request's start (published only if the gateway dies before it ends).
    Built directly, without a record: it is built for every request, and most are never written."""
    event = events_pb2.OutcomeEvent(
        **_request_fields(request, store_prompt_text=store_prompt_text, redact=redact),
        finish_reason=FINISH_REASONS["error"],
        route=common_pb2.RouteSummary(policy=request.policy, applied_policy=_POLICY_VALUES[request.policy]),
        usage=common_pb2.Usage(),
        timings=common_pb2.StageTimings(),
    )
    event.error.CopyFrom(error_info(error))
    return event


def _request_fields(
    request: CascadeRequest, *, store_prompt_text: bool, redact: Callable[[str], str]
) -> dict[str, Any]:
    """The OutcomeEvent fields that come from the request alone (both outcome builders above)."""
    return {
        "schema_version": 1,
        "request_id": request.request_id,
        "time": now_timestamp(),
        "tenant": request.tenant,
        "tags": request.tags,
        "policy": request.policy,  # deprecated: route.applied_policy
        "prompt_sha256": hashlib.sha256(request.routed_text.encode()).hexdigest(),
        "prompt_text": redact(request.routed_text) if store_prompt_text else "",
    }
