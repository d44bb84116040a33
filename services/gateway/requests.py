"""Validating a client's request into the cascade's own request object."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cascade.v1 import cascade_pb2
from services.core.errors import InvalidRequest, Overloaded
from services.core.settings import GatewaySettings
from services.tier.backends import Message

# POLICY_AUTO is an alias of POLICY_CASCADE (same number); UNSPECIFIED takes gateway.default_policy.
POLICIES: dict[int, str] = {
    cascade_pb2.POLICY_CASCADE: "cascade",
    cascade_pb2.POLICY_ROUTE: "route",
    cascade_pb2.POLICY_SMALL: "small",
    cascade_pb2.POLICY_LARGE: "large",
}
STREAM_MODES: dict[int, bool] = {
    cascade_pb2.STREAM_MODE_UNSPECIFIED: False,
    cascade_pb2.STREAM_MODE_HELD: False,
    cascade_pb2.STREAM_MODE_SPECULATIVE: True,
}
ROLES = {"system", "user", "assistant"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_STOP, MAX_TAGS, MAX_TAG_CHARS, MAX_COMMENT_CHARS = 16, 32, 256, 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class CascadeRequest:
    request_id: str
    messages: tuple[Message, ...]
    # What the router scores and the replay tier looks up: the last user message.
    routed_text: str
    max_tokens: int
    temperature: float | None
    stop: tuple[str, ...]
    policy: str  # "cascade", "route", "small" or "large"
    tenant: str
    tags: dict[str, str] = field(default_factory=dict)
    # Stream a small answer live and retract it if it escalates (else: hold it until it is judged).
    speculative: bool = False
    # The caller reads the answer as a stream (else it gets it whole: tiers may gather more per chunk).
    streamed: bool = True


def parse_generate(
    req: cascade_pb2.GenerateRequest, limits: GatewaySettings, *, streamed: bool = True
) -> CascadeRequest:
    """Check a GenerateRequest; raise InvalidRequest (or Overloaded for an oversized prompt)."""
    messages = _messages(req)
    chars = sum(len(m.content) for m in messages)
    if chars > limits.max_prompt_chars:
        raise Overloaded(f"prompt has {chars} characters; the limit is {limits.max_prompt_chars}")
    return CascadeRequest(
        request_id=_request_id(req.request_id),
        messages=messages,
        routed_text=next(m.content for m in reversed(messages) if m.role == "user"),
        max_tokens=_max_tokens(req.max_tokens, limits),
        temperature=_temperature(req),
        stop=_stop(req.stop),
        policy=_policy(req.policy, limits.default_policy),
        tenant=_bounded("tenant", req.tenant, 128),
        tags=_tags(req.tags),
        speculative=_speculative(req.stream_mode),
        streamed=streamed,
    )


def _messages(req: cascade_pb2.GenerateRequest) -> tuple[Message, ...]:
    if req.prompt and req.messages:
        raise InvalidRequest("set either prompt or messages, not both")
    if not req.messages:
        if not req.prompt.strip():
            raise InvalidRequest("prompt is empty")
        return (Message(role="user", content=req.prompt),)
    for i, m in enumerate(req.messages):
        if m.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role is {m.role!r}; expected one of {sorted(ROLES)}")
    users = [m for m in req.messages if m.role == "user"]
    if not users or not users[-1].content.strip():
        raise InvalidRequest("messages need a non-empty user message")
    return tuple(Message(role=m.role, content=m.content) for m in req.messages)


def _request_id(value: str) -> str:
    if not value:
        return uuid.uuid4().hex
    if not _REQUEST_ID.match(value):
        raise InvalidRequest("request_id must be 1-128 characters of letters, digits, '.', '_', ':', '-'")
    return value


def _max_tokens(value: int, limits: GatewaySettings) -> int:
    if value == 0:
        return limits.default_max_tokens
    if value > limits.max_tokens_limit:
        raise InvalidRequest(f"max_tokens is {value}; it must be between 1 and {limits.max_tokens_limit}")
    return value


def _temperature(req: cascade_pb2.GenerateRequest) -> float | None:
    if not req.HasField("temperature"):
        return None
    t = req.temperature
    if not math.isfinite(t) or not 0.0 <= t <= 2.0:
        raise InvalidRequest(f"temperature is {t}; it must be in [0, 2]")
    return t


def _stop(values: Sequence[str]) -> tuple[str, ...]:
    if len(values) > MAX_STOP or any(not s or len(s) > MAX_TAG_CHARS for s in values):
        raise InvalidRequest(f"stop takes at most {MAX_STOP} non-empty strings of up to {MAX_TAG_CHARS} characters")
    return tuple(values)


def _policy(value: int, default: str) -> str:
    if value == cascade_pb2.POLICY_UNSPECIFIED:
        return default
    try:
        return POLICIES[value]
    except KeyError:
        raise InvalidRequest(f"unknown policy {value}; expected CASCADE (AUTO), ROUTE, SMALL or LARGE") from None


def _speculative(value: int) -> bool:
    try:
        return STREAM_MODES[value]
    except KeyError:
        raise InvalidRequest(f"unknown stream_mode {value}; expected HELD or SPECULATIVE") from None


def _tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        _bounded("tag key", key, 64)
        _bounded(f"tag {key!r}", value, MAX_TAG_CHARS)
    return dict(tags)


def _bounded(name: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Feedback:
    request_id: str
    score: float
    comment: str
    tenant: str


def parse_feedback(req: cascade_pb2.FeedbackRequest) -> Feedback:
    if not req.request_id:
        raise InvalidRequest("feedback needs the request_id of an earlier request")
    if not math.isfinite(req.score) or not 0.0 <= req.score <= 1.0:
        raise InvalidRequest(f"score is {req.score}; it must be in [0, 1]")
    return Feedback(
        request_id=_request_id(req.request_id),
        score=req.score,
        comment=_bounded("comment", req.comment, MAX_COMMENT_CHARS),
        tenant=_bounded("tenant", req.tenant, 128),
    )
