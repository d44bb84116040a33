"""The gateway's one interceptor: every Cascade call's trace, caller and errors, whatever its RPC kind.

For each call it continues the caller's trace (W3C ``traceparent`` metadata) in a server span,
authenticates the caller (services/gateway/auth.py) and stamps its tenant on each request message,
and turns a project error into its gRPC status (services/core/status.py), anything else into
INTERNAL. The four RPC kinds share that one guard; only how a result is passed on differs (returned,
or yielded item by item), as in opentelemetry-python-contrib's gRPC server instrumentation. Health
and reflection are not intercepted: they stay open to probes and tools.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio
from opentelemetry import context as otel_context
from opentelemetry import trace

from services.core import metrics
from services.core.errors import CascadeError, InvalidRequest
from services.core.status import grpc_status
from services.core.telemetry import extract_context, span
from services.gateway.auth import Authenticator

log = logging.getLogger(__name__)
Behavior = Callable[[Any, aio.ServicerContext], Any]
Admit = Callable[[Any], Any]

# (request streaming, response streaming) -> the handler's behaviour attribute and its factory.
_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class GatewayInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, *, service: str, auth: Authenticator) -> None:
        self._prefix, self._auth = f"/{service}/", auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(self._prefix):
            return handler
        attr, factory = _KINDS[(handler.request_streaming, handler.response_streaming)]
        wrap = self._streaming if handler.response_streaming else self._unary
        behavior = wrap(getattr(handler, attr), details.method, handler.request_streaming)
        return factory(
            behavior,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _unary(self, behavior: Behavior, method: str, request_streaming: bool) -> Behavior:
        async def call(request: Any, context: aio.ServicerContext) -> Any:
            async with self._guard(method, context) as admit:
                return await behavior(_admitted(request, admit, request_streaming), context)

        return call

    def _streaming(self, behavior: Behavior, method: str, request_streaming: bool) -> Behavior:
        async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            async with self._guard(method, context) as admit:
                async for item in behavior(_admitted(request, admit, request_streaming), context):
                    yield item

        return call

    @asynccontextmanager
    async def _guard(self, method: str, context: aio.ServicerContext) -> AsyncIterator[Admit]:
        # "-bin" metadata values are bytes: neither a token nor a trace header.
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        attached = otel_context.attach(extract_context(metadata))
        try:
            with span(
                __name__,
                method,
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method},
                record_exception=False,
                set_status_on_exception=False,
            ) as current:
                try:
                    tenant = self._auth.authenticate(metadata)
                    if tenant is not None:
                        current.set_attribute("cascade.tenant", tenant)
                    yield lambda request: self._auth.admit(tenant, request)
                except aio.AbortError:
                    raise
                except Exception as exc:
                    await _abort(context, method, exc, current)
        finally:
            otel_context.detach(attached)


def _admitted(request: Any, admit: Admit, streaming: bool) -> Any:
    """The request (or, for a client stream, each of its messages) checked readable, admitted for the caller."""
    if not streaming:
        return admit(_readable(request))

    async def each() -> AsyncIterator[Any]:
        async for message in request:
            yield admit(_readable(message))

    return each()


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


def _readable(request: Any) -> Any:
    if isinstance(request, _Unreadable):
        raise InvalidRequest(f"the request ({request.size} bytes) is not a valid message for this method")
    return request


async def _abort(context: aio.ServicerContext, method: str, exc: Exception, span: trace.Span) -> None:
    status, message = grpc.StatusCode.INTERNAL, "internal error; see the gateway log"
    if isinstance(exc, CascadeError):
        status, message = grpc_status(exc.code), exc.message
        level = logging.ERROR if status == grpc.StatusCode.INTERNAL else logging.INFO
        log.log(level, "%s -> %s: %s", method, status.name, exc.message)
    else:
        log.exception("%s failed unexpectedly", method)
    metrics.RPC_ERRORS.add(1, {"method": method.rsplit("/", 1)[-1], "status": status.name})
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{status.name}: {message}"))
    await context.abort(status, message)
