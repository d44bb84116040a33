from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_ERROR: _ClassVar[FinishReason]

class Policy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_UNSPECIFIED: _ClassVar[Policy]
    POLICY_CASCADE: _ClassVar[Policy]
    POLICY_AUTO: _ClassVar[Policy]
    POLICY_SMALL: _ClassVar[Policy]
    POLICY_LARGE: _ClassVar[Policy]
    POLICY_ROUTE: _ClassVar[Policy]

class PathReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATH_REASON_UNSPECIFIED: _ClassVar[PathReason]
    PATH_REASON_POLICY: _ClassVar[PathReason]
    PATH_REASON_ROUTED: _ClassVar[PathReason]
    PATH_REASON_ROUTED_LARGE: _ClassVar[PathReason]
    PATH_REASON_ROUTER_FALLBACK: _ClassVar[PathReason]
    PATH_REASON_CONFIDENT: _ClassVar[PathReason]
    PATH_REASON_LOW_CONFIDENCE: _ClassVar[PathReason]
    PATH_REASON_DISAGREEMENT: _ClassVar[PathReason]
    PATH_REASON_SMALL_ERROR: _ClassVar[PathReason]
    PATH_REASON_BUDGET: _ClassVar[PathReason]
    PATH_REASON_NO_ESCALATION: _ClassVar[PathReason]
    PATH_REASON_TIER_DOWN: _ClassVar[PathReason]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_ERROR: FinishReason
POLICY_UNSPECIFIED: Policy
POLICY_CASCADE: Policy
POLICY_AUTO: Policy
POLICY_SMALL: Policy
POLICY_LARGE: Policy
POLICY_ROUTE: Policy
PATH_REASON_UNSPECIFIED: PathReason
PATH_REASON_POLICY: PathReason
PATH_REASON_ROUTED: PathReason
PATH_REASON_ROUTED_LARGE: PathReason
PATH_REASON_ROUTER_FALLBACK: PathReason
PATH_REASON_CONFIDENT: PathReason
PATH_REASON_LOW_CONFIDENCE: PathReason
PATH_REASON_DISAGREEMENT: PathReason
PATH_REASON_SMALL_ERROR: PathReason
PATH_REASON_BUDGET: PathReason
PATH_REASON_NO_ESCALATION: PathReason
PATH_REASON_TIER_DOWN: PathReason

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "estimated")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    estimated: bool
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., estimated: _Optional[bool] = ...) -> None: ...

class RouteSummary(_message.Message):
    __slots__ = ("tier", "tiers_tried", "escalated", "router_score", "router_threshold", "router_model_version", "confidence", "policy", "router_error", "reason", "confidence_threshold", "agreement", "samples", "second_opinion_tier", "confidence_model_version", "budget_limited", "applied_policy", "tier_down")
    TIER_FIELD_NUMBER: _ClassVar[int]
    TIERS_TRIED_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_FIELD_NUMBER: _ClassVar[int]
    ROUTER_SCORE_FIELD_NUMBER: _ClassVar[int]
    ROUTER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ROUTER_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ROUTER_ERROR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SECOND_OPINION_TIER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LIMITED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIER_DOWN_FIELD_NUMBER: _ClassVar[int]
    tier: str
    tiers_tried: _containers.RepeatedScalarFieldContainer[str]
    escalated: bool
    router_score: float
    router_threshold: float
    router_model_version: str
    confidence: float
    policy: str
    router_error: str
    reason: PathReason
    confidence_threshold: float
    agreement: float
    samples: int
    second_opinion_tier: str
    confidence_model_version: str
    budget_limited: bool
    applied_policy: Policy
    tier_down: str
    def __init__(self, tier: _Optional[str] = ..., tiers_tried: _Optional[_Iterable[str]] = ..., escalated: _Optional[bool] = ..., router_score: _Optional[float] = ..., router_threshold: _Optional[float] = ..., router_model_version: _Optional[str] = ..., confidence: _Optional[float] = ..., policy: _Optional[str] = ..., router_error: _Optional[str] = ..., reason: _Optional[_Union[PathReason, str]] = ..., confidence_threshold: _Optional[float] = ..., agreement: _Optional[float] = ..., samples: _Optional[int] = ..., second_opinion_tier: _Optional[str] = ..., confidence_model_version: _Optional[str] = ..., budget_limited: _Optional[bool] = ..., applied_policy: _Optional[_Union[Policy, str]] = ..., tier_down: _Optional[str] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("route_ms", "first_token_ms", "small_ms", "large_ms", "total_ms")
    ROUTE_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    SMALL_MS_FIELD_NUMBER: _ClassVar[int]
    LARGE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    route_ms: float
    first_token_ms: float
    small_ms: float
    large_ms: float
    total_ms: float
    def __init__(self, route_ms: _Optional[float] = ..., first_token_ms: _Optional[float] = ..., small_ms: _Optional[float] = ..., large_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...
