import datetime

from cascade.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_CANCELLED: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode

class RouteRequest(_message.Message):
    __slots__ = ("request_id", "text", "deadline_unix_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    deadline_unix_ms: int
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., deadline_unix_ms: _Optional[int] = ...) -> None: ...

class RouteDecision(_message.Message):
    __slots__ = ("request_id", "tier", "score", "threshold", "model_version", "latency_ms", "error", "thresholds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tier: str
    score: float
    threshold: float
    model_version: str
    latency_ms: float
    error: str
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, request_id: _Optional[str] = ..., tier: _Optional[str] = ..., score: _Optional[float] = ..., threshold: _Optional[float] = ..., model_version: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., thresholds: _Optional[_Iterable[float]] = ...) -> None: ...

class TierRequest(_message.Message):
    __slots__ = ("request_id", "messages", "max_tokens", "temperature", "stop", "want_logprobs", "chunk_subject", "deadline_unix_ms", "n", "chunk_interval_ms", "hold_first_token")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    WANT_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    CHUNK_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIRST_TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    max_tokens: int
    temperature: float
    stop: _containers.RepeatedScalarFieldContainer[str]
    want_logprobs: bool
    chunk_subject: str
    deadline_unix_ms: int
    n: int
    chunk_interval_ms: int
    hold_first_token: bool
    def __init__(self, request_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., stop: _Optional[_Iterable[str]] = ..., want_logprobs: _Optional[bool] = ..., chunk_subject: _Optional[str] = ..., deadline_unix_ms: _Optional[int] = ..., n: _Optional[int] = ..., chunk_interval_ms: _Optional[int] = ..., hold_first_token: _Optional[bool] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("text", "token_logprobs", "finish_reason")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_logprobs: _containers.RepeatedScalarFieldContainer[float]
    finish_reason: _common_pb2.FinishReason
    def __init__(self, text: _Optional[str] = ..., token_logprobs: _Optional[_Iterable[float]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ...) -> None: ...

class TierAccept(_message.Message):
    __slots__ = ("request_id", "tier", "backend", "model", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tier: str
    backend: str
    model: str
    error: ErrorInfo
    def __init__(self, request_id: _Optional[str] = ..., tier: _Optional[str] = ..., backend: _Optional[str] = ..., model: _Optional[str] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class TokenChunk(_message.Message):
    __slots__ = ("request_id", "seq", "tier", "text", "token_logprobs", "final", "finish_reason", "usage", "error", "replay_score", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAY_SCORE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    seq: int
    tier: str
    text: str
    token_logprobs: _containers.RepeatedScalarFieldContainer[float]
    final: bool
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    error: ErrorInfo
    replay_score: float
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    def __init__(self, request_id: _Optional[str] = ..., seq: _Optional[int] = ..., tier: _Optional[str] = ..., text: _Optional[str] = ..., token_logprobs: _Optional[_Iterable[float]] = ..., final: _Optional[bool] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., replay_score: _Optional[float] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class TierAttempt(_message.Message):
    __slots__ = ("tier", "backend", "model", "usage", "cost_usd", "latency_ms", "confidence", "finish_reason", "error", "replay_score", "purpose", "samples", "text", "sample_texts", "tier_rank")
    TIER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAY_SCORE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_TEXTS_FIELD_NUMBER: _ClassVar[int]
    TIER_RANK_FIELD_NUMBER: _ClassVar[int]
    tier: str
    backend: str
    model: str
    usage: _common_pb2.Usage
    cost_usd: float
    latency_ms: float
    confidence: float
    finish_reason: _common_pb2.FinishReason
    error: ErrorInfo
    replay_score: float
    purpose: str
    samples: int
    text: str
    sample_texts: _containers.RepeatedScalarFieldContainer[str]
    tier_rank: int
    def __init__(self, tier: _Optional[str] = ..., backend: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., latency_ms: _Optional[float] = ..., confidence: _Optional[float] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., replay_score: _Optional[float] = ..., purpose: _Optional[str] = ..., samples: _Optional[int] = ..., text: _Optional[str] = ..., sample_texts: _Optional[_Iterable[str]] = ..., tier_rank: _Optional[int] = ...) -> None: ...

class OutcomeEvent(_message.Message):
    __slots__ = ("schema_version", "request_id", "time", "tenant", "tags", "policy", "prompt_sha256", "prompt_text", "route", "attempts", "usage", "cost_usd", "timings", "finish_reason", "error", "answer_chars", "answer_text", "exploration")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ANSWER_CHARS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TEXT_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    time: _timestamp_pb2.Timestamp
    tenant: str
    tags: _containers.ScalarMap[str, str]
    policy: str
    prompt_sha256: str
    prompt_text: str
    route: _common_pb2.RouteSummary
    attempts: _containers.RepeatedCompositeFieldContainer[TierAttempt]
    usage: _common_pb2.Usage
    cost_usd: float
    timings: _common_pb2.StageTimings
    finish_reason: _common_pb2.FinishReason
    error: ErrorInfo
    answer_chars: int
    answer_text: str
    exploration: str
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., policy: _Optional[str] = ..., prompt_sha256: _Optional[str] = ..., prompt_text: _Optional[str] = ..., route: _Optional[_Union[_common_pb2.RouteSummary, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[TierAttempt, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., timings: _Optional[_Union[_common_pb2.StageTimings, _Mapping]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., answer_chars: _Optional[int] = ..., answer_text: _Optional[str] = ..., exploration: _Optional[str] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("schema_version", "request_id", "time", "score", "comment", "tenant")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    request_id: str
    time: _timestamp_pb2.Timestamp
    score: float
    comment: str
    tenant: str
    def __init__(self, schema_version: _Optional[int] = ..., request_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score: _Optional[float] = ..., comment: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class ModelEvent(_message.Message):
    __slots__ = ("schema_version", "time", "kind", "action", "version", "previous_version", "forced", "reason")
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    time: _timestamp_pb2.Timestamp
    kind: str
    action: str
    version: str
    previous_version: str
    forced: bool
    reason: str
    def __init__(self, schema_version: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., action: _Optional[str] = ..., version: _Optional[str] = ..., previous_version: _Optional[str] = ..., forced: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
