"""The project's error hierarchy, under the name services use: defined in ``cascade_common.errors``
(below ``classifier/``, which raises some of them and must not import ``services/``)."""

from cascade_common.errors import (
    Cancelled,
    CascadeError,
    ConfigError,
    DeadlineExceeded,
    ErrorCode,
    InternalError,
    InUse,
    InvalidRequest,
    ModelError,
    NatsUnavailable,
    NotFound,
    Overloaded,
    TierUnavailable,
    Unavailable,
    error_for_code,
)

__all__ = [
    "Cancelled",
    "CascadeError",
    "ConfigError",
    "DeadlineExceeded",
    "ErrorCode",
    "InUse",
    "InternalError",
    "InvalidRequest",
    "ModelError",
    "NatsUnavailable",
    "NotFound",
    "Overloaded",
    "TierUnavailable",
    "Unavailable",
    "error_for_code",
]
