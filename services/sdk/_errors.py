"""gRPC status codes back to the project's error hierarchy.

Every server-side failure surfaces as a subclass of both the project class for its
status (``InvalidRequest``, ``Unavailable``, ...) and :class:`RemoteError`, which
carries the original ``grpc_code``. Catch the project class for what went wrong;
catch ``RemoteError`` to handle anything the server (or the transport) reported.
"""

from __future__ import annotations

import grpc

from services.core.errors import (
    Cancelled,
    CascadeError,
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unavailable,
)


class RemoteError(CascadeError):
    """An error reported by the server or the transport for one call.

    ``message`` is the server's status details; ``grpc_code`` the gRPC status code.
    The ``grpc.RpcError`` it was made from is its ``__cause__``.
    """

    grpc_code: grpc.StatusCode

    def __init__(self, message: str, grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, grpc.StatusCode]]:
        return (type(self), (self.message, self.grpc_code))


class RemoteInvalidRequest(InvalidRequest, RemoteError):
    """The server rejected the request as malformed (INVALID_ARGUMENT)."""


class RemoteNotFound(NotFound, RemoteError):
    """The server did not find a named thing (NOT_FOUND)."""


class RemoteOverloaded(Overloaded, RemoteError):
    """The server is overloaded or the request is too large (RESOURCE_EXHAUSTED)."""


class RemoteUnavailable(Unavailable, RemoteError):
    """The server or one of its dependencies cannot be reached (UNAVAILABLE)."""


class RemoteDeadlineExceeded(DeadlineExceeded, RemoteError):
    """The call's deadline passed before the answer was complete (DEADLINE_EXCEEDED)."""


class RemoteCancelled(Cancelled, RemoteError):
    """The call was cancelled (CANCELLED)."""


class RemoteInternalError(InternalError, RemoteError):
    """Any other status: INTERNAL, UNKNOWN, UNIMPLEMENTED, UNAUTHENTICATED, ..."""


_BY_STATUS: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: RemoteInvalidRequest,
    grpc.StatusCode.NOT_FOUND: RemoteNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RemoteOverloaded,
    grpc.StatusCode.UNAVAILABLE: RemoteUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: RemoteDeadlineExceeded,
    grpc.StatusCode.CANCELLED: RemoteCancelled,
}


def from_rpc_error(error: grpc.RpcError) -> RemoteError:
    """The project exception for a failed call; raise it ``from error``."""
    # Every RpcError the stubs raise is also a grpc.Call; a bare RpcError has no status.
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else None
    cls = _BY_STATUS.get(code, RemoteInternalError)
    return cls(details or code.name, code)
