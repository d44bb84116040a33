"""One error hierarchy for the whole project.

Every error a caller can act on derives from :class:`CascadeError` and carries a
:class:`ErrorCode`. The gateway maps the code to a gRPC status, the tier workers
put it on the wire (``cascade.v1.ErrorInfo``), and the SDK maps the status back to
the same classes, so a client catches ``InvalidRequest`` whichever hop raised it.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Mirrors ``cascade.v1.ErrorCode`` (same numbers) and, by name, gRPC status codes."""

    UNSPECIFIED = 0
    INVALID_ARGUMENT = 1
    NOT_FOUND = 2
    RESOURCE_EXHAUSTED = 3
    UNAVAILABLE = 4
    DEADLINE_EXCEEDED = 5
    INTERNAL = 6
    CANCELLED = 7
    UNAUTHENTICATED = 8
    PERMISSION_DENIED = 9


class CascadeError(Exception):
    """Root of all project errors."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CascadeError):
    """The request is malformed or out of range (INVALID_ARGUMENT)."""

    code = ErrorCode.INVALID_ARGUMENT


class NotFound(CascadeError):
    """A named thing does not exist, e.g. a prompt unknown to a replay tier (NOT_FOUND)."""

    code = ErrorCode.NOT_FOUND


class Overloaded(CascadeError):
    """Too much in flight, or a request larger than allowed (RESOURCE_EXHAUSTED)."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(CascadeError):
    """A dependency is down: no router, no tier worker, LLM server unreachable (UNAVAILABLE)."""

    code = ErrorCode.UNAVAILABLE


class TierUnavailable(Unavailable):
    """A tier's backend (the LLM server) cannot be reached or failed."""


class NatsUnavailable(Unavailable):
    """This process's NATS connection is down (reconnecting): no router, tier or JetStream can be reached."""


class DeadlineExceeded(CascadeError):
    """The request's deadline passed before an answer was complete (DEADLINE_EXCEEDED)."""

    code = ErrorCode.DEADLINE_EXCEEDED


class Cancelled(CascadeError):
    """The caller went away (CANCELLED)."""

    code = ErrorCode.CANCELLED


class Unauthenticated(CascadeError):
    """No valid token came with the call, and the gateway requires one (UNAUTHENTICATED)."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(CascadeError):
    """The caller's tenant may not do what it asked, e.g. use a policy (PERMISSION_DENIED)."""

    code = ErrorCode.PERMISSION_DENIED


class InternalError(CascadeError):
    """A bug or an unexpected failure (INTERNAL)."""

    code = ErrorCode.INTERNAL


class ConfigError(CascadeError):
    """Configuration is invalid; raised at process start, never on the request path."""

    code = ErrorCode.INVALID_ARGUMENT


class InUse(ConfigError):
    """A port or data directory the configuration names is taken by another process."""


class ModelError(CascadeError):
    """A router model file is missing, corrupt or does not match what is expected."""

    code = ErrorCode.UNAVAILABLE


# The exception of each code: the only hand-kept part of the error table (services/core/status.py
# derives the gRPC side from the codes' names). A code without its class fails every import.
_BY_CODE: dict[ErrorCode, type[CascadeError]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidRequest,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.RESOURCE_EXHAUSTED: Overloaded,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    ErrorCode.CANCELLED: Cancelled,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.UNAUTHENTICATED: Unauthenticated,
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
}
if missing := set(ErrorCode) - set(_BY_CODE) - {ErrorCode.UNSPECIFIED}:
    raise ImportError(f"cascade_common.errors: no exception class for {sorted(c.name for c in missing)}")


def error_class(code: ErrorCode) -> type[CascadeError]:
    """The project exception of a code (UNSPECIFIED: InternalError)."""
    return _BY_CODE.get(code, InternalError)


def error_for_code(code: int, message: str) -> CascadeError:
    """The exception for a wire error code (unknown codes become InternalError)."""
    try:
        cls = error_class(ErrorCode(code))
    except ValueError:
        cls = InternalError
    return cls(message)


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
    "PermissionDenied",
    "TierUnavailable",
    "Unauthenticated",
    "Unavailable",
    "error_class",
    "error_for_code",
]
