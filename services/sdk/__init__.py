"""Python client SDK of prompt-cascade, for internal services.

Everything a caller needs is importable from here::

    from services.sdk import AsyncCascadeClient, CascadeClient, ChatMessage, InvalidRequest, Overloaded

Clients return frozen dataclasses (:class:`GenerateResult`, :class:`StreamChunk`), never
protobuf objects, and raise the project's error classes (rooted in :class:`CascadeError`),
never ``grpc.RpcError``. Errors reported by the server are also :class:`RemoteError`,
which carries the gRPC status as ``grpc_code``.
"""

from services.core.errors import (
    Cancelled,
    CascadeError,
    ConfigError,
    DeadlineExceeded,
    ErrorCode,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    TierUnavailable,
    Unauthenticated,
    Unavailable,
)
from services.sdk._errors import RemoteError
from services.sdk.aio import AsyncCascadeClient
from services.sdk.client import CascadeClient
from services.sdk.types import (
    ChatMessage,
    GenerateResult,
    Policy,
    Route,
    StreamChunk,
    Timings,
    TlsConfig,
    Usage,
    acollect,
    collect,
)

__all__ = [
    "AsyncCascadeClient",
    "Cancelled",
    "CascadeClient",
    "CascadeError",
    "ChatMessage",
    "ConfigError",
    "DeadlineExceeded",
    "ErrorCode",
    "GenerateResult",
    "InternalError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "Policy",
    "RemoteError",
    "Route",
    "StreamChunk",
    "TierUnavailable",
    "Timings",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
    "Usage",
    "acollect",
    "collect",
]
