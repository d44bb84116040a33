"""One table from gRPC status to HTTP status and OpenAI error type, and OpenAI's error body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from services.core.errors import CascadeError
from services.core.status import GRPC_STATUS, grpc_status


@dataclass(frozen=True, slots=True)
class HttpStatus:
    status: int
    type: str


# Every failure the front door reports goes through this table. OpenAI's clients pick their exception
# class by the HTTP status alone (BadRequestError, NotFoundError, RateLimitError, ...); `type` is for people.
STATUS: dict[grpc.StatusCode, HttpStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpStatus(400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: HttpStatus(401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: HttpStatus(403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: HttpStatus(404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpStatus(429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: HttpStatus(503, "service_unavailable_error"),
    grpc.StatusCode.CANCELLED: HttpStatus(503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpStatus(504, "timeout_error"),
}
INTERNAL = HttpStatus(500, "server_error")

# Each code of the error table (services/core/status.py) answers with its own HTTP status; only
# INTERNAL (and what no code names) is a 500. A code added without its row here fails at import.
if _missing := [c.name for c, s in GRPC_STATUS.items() if s not in STATUS and s is not grpc.StatusCode.INTERNAL]:
    raise ImportError(f"services.http.errors.STATUS has no HTTP status for {_missing}")


class ApiError(Exception):
    """A failure to answer with OpenAI's error body; ``code`` is the gRPC status name, lowercased."""

    def __init__(
        self, grpc_code: grpc.StatusCode, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.http = STATUS.get(grpc_code, INTERNAL)
        self.message, self.param = message, param
        self.code = code or grpc_code.name.lower()

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> ApiError:
        code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
        details = error.details() if callable(getattr(error, "details", None)) else None
        return cls(code, details or code.name)

    @classmethod
    def from_cascade(cls, error: CascadeError) -> ApiError:
        return cls(grpc_status(error.code), error.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.http.type, "param": self.param, "code": self.code}}


def model_not_found(model: str) -> ApiError:
    # OpenAI's own wording and code for this case, which some clients match on.
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"The model `{model}` does not exist; GET /v1/models lists the models served here.",
        param="model",
        code="model_not_found",
    )


def unauthenticated() -> ApiError:
    return ApiError(
        grpc.StatusCode.UNAUTHENTICATED,
        "Missing or invalid API key: send `Authorization: Bearer <key>` with a configured key.",
        code="invalid_api_key",
    )
