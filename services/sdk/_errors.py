"""gRPC status codes back to the project's error hierarchy.

Every server-side failure surfaces as a subclass of both the project class for its
status (``InvalidRequest``, ``Unavailable``, ...) and :class:`RemoteError`, which
carries the original ``grpc_code``. Catch the project class for what went wrong;
catch ``RemoteError`` to handle anything the server (or the transport) reported.
"""

from __future__ import annotations

import grpc

from services.core.errors import CascadeError, ErrorCode, error_class
from services.core.status import error_code


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


def _remote(base: type[CascadeError]) -> type[RemoteError]:
    name = f"Remote{base.__name__}"
    doc = f"{base.__doc__} Reported by the server or the transport."
    cls = type(name, (base, RemoteError), {"__doc__": doc, "__module__": __name__, "__qualname__": name})
    globals()[name] = cls  # pickle finds a class by its module and name
    return cls


# One class per code of the error table (services/core/status.py), e.g. RemoteInvalidRequest; any
# status no code names (UNKNOWN, UNIMPLEMENTED, ...) is RemoteInternalError.
_BY_CODE: dict[ErrorCode, type[RemoteError]] = {code: _remote(error_class(code)) for code in ErrorCode if code}


def from_rpc_error(error: grpc.RpcError) -> RemoteError:
    """The project exception for a failed call; raise it ``from error``."""
    # Every RpcError the stubs raise is also a grpc.Call; a bare RpcError has no status.
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else None
    return _BY_CODE[error_code(code)](details or code.name, code)
