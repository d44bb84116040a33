from cascade.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from cascade.v1.common_pb2 import ChatMessage as ChatMessage
from cascade.v1.common_pb2 import Usage as Usage
from cascade.v1.common_pb2 import RouteSummary as RouteSummary
from cascade.v1.common_pb2 import StageTimings as StageTimings
from cascade.v1.common_pb2 import FinishReason as FinishReason
from cascade.v1.common_pb2 import Policy as Policy
from cascade.v1.common_pb2 import PathReason as PathReason

DESCRIPTOR: _descriptor.FileDescriptor
FINISH_REASON_UNSPECIFIED: _common_pb2.FinishReason
FINISH_REASON_STOP: _common_pb2.FinishReason
FINISH_REASON_LENGTH: _common_pb2.FinishReason
FINISH_REASON_ERROR: _common_pb2.FinishReason
POLICY_UNSPECIFIED: _common_pb2.Policy
POLICY_CASCADE: _common_pb2.Policy
POLICY_AUTO: _common_pb2.Policy
POLICY_SMALL: _common_pb2.Policy
POLICY_LARGE: _common_pb2.Policy
POLICY_ROUTE: _common_pb2.Policy
PATH_REASON_UNSPECIFIED: _common_pb2.PathReason
PATH_REASON_POLICY: _common_pb2.PathReason
PATH_REASON_ROUTED: _common_pb2.PathReason
PATH_REASON_ROUTED_LARGE: _common_pb2.PathReason
PATH_REASON_ROUTER_FALLBACK: _common_pb2.PathReason
PATH_REASON_CONFIDENT: _common_pb2.PathReason
PATH_REASON_LOW_CONFIDENCE: _common_pb2.PathReason
PATH_REASON_DISAGREEMENT: _common_pb2.PathReason
PATH_REASON_SMALL_ERROR: _common_pb2.PathReason
PATH_REASON_BUDGET: _common_pb2.PathReason
PATH_REASON_NO_ESCALATION: _common_pb2.PathReason
PATH_REASON_TIER_DOWN: _common_pb2.PathReason

class StreamMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_MODE_UNSPECIFIED: _ClassVar[StreamMode]
    STREAM_MODE_HELD: _ClassVar[StreamMode]
    STREAM_MODE_SPECULATIVE: _ClassVar[StreamMode]
STREAM_MODE_UNSPECIFIED: StreamMode
STREAM_MODE_HELD: StreamMode
STREAM_MODE_SPECULATIVE: StreamMode

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "messages", "max_tokens", "temperature", "stop", "policy", "tenant", "tags", "request_id", "stream_mode")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_MODE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    max_tokens: int
    temperature: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    policy: _common_pb2.Policy
    tenant: str
    tags: _containers.ScalarMap[str, str]
    request_id: str
    stream_mode: StreamMode
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[_common_pb2.Policy, str]] = ..., tenant: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ..., stream_mode: _Optional[_Union[StreamMode, str]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "finish_reason", "route", "usage", "cost_usd", "timings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    finish_reason: _common_pb2.FinishReason
    route: _common_pb2.RouteSummary
    usage: _common_pb2.Usage
    cost_usd: float
    timings: _common_pb2.StageTimings
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., route: _Optional[_Union[_common_pb2.RouteSummary, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., timings: _Optional[_Union[_common_pb2.StageTimings, _Mapping]] = ...) -> None: ...

class GenerateChunk(_message.Message):
    __slots__ = ("request_id", "text", "tier", "final", "finish_reason", "route", "usage", "cost_usd", "timings", "retract")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    RETRACT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    tier: str
    final: bool
    finish_reason: _common_pb2.FinishReason
    route: _common_pb2.RouteSummary
    usage: _common_pb2.Usage
    cost_usd: float
    timings: _common_pb2.StageTimings
    retract: bool
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., tier: _Optional[str] = ..., final: _Optional[bool] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., route: _Optional[_Union[_common_pb2.RouteSummary, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., timings: _Optional[_Union[_common_pb2.StageTimings, _Mapping]] = ..., retract: _Optional[bool] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "score", "comment", "tenant")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    score: float
    comment: str
    tenant: str
    def __init__(self, request_id: _Optional[str] = ..., score: _Optional[float] = ..., comment: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...
