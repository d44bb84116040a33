"""One place where project errors become gRPC status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from services.core.errors import CascadeError, ErrorCode, InvalidRequest

log = logging.getLogger(__name__)

STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


async def _abort(context: aio.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, CascadeError):
        status = STATUS.get(exc.code, grpc.StatusCode.INTERNAL)
        log.log(
            logging.ERROR if status == grpc.StatusCode.INTERNAL else logging.INFO,
            "%s -> %s: %s",
            method,
            status.name,
            exc.message,
        )
        await context.abort(status, exc.message)
    log.exception("%s failed unexpectedly", method)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the gateway log")


class _Unreadable:
    """What a request's bytes became when they are not the method's message."""

    def __init__(self, size: int) -> None:
        self.size = size


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    # grpc answers a deserializer that raises with INTERNAL; bytes that are not a request are the caller's
    # fault (INVALID_ARGUMENT), so the failure is carried into the handler to be raised there.
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, or an invalid UTF-8 string field
            return _Unreadable(len(data))

    return parse


def _readable(request: Any) -> None:
    if isinstance(request, _Unreadable):
        raise InvalidRequest(f"the request ({request.size} bytes) is not a valid message for this method")


class ErrorInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Turns a CascadeError raised by a handler into its status; anything else into INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: aio.ServicerContext) -> Any:
                try:
                    _readable(request)
                    return await inner(request, context)
                except aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_unary_rpc_method_handler(
                unary, _lenient(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    _readable(request)
                    async for item in inner_stream(request, context):
                        yield item
                except aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, method, exc)

            return grpc.unary_stream_rpc_method_handler(
                stream, _lenient(handler.request_deserializer), handler.response_serializer
            )
        return handler
