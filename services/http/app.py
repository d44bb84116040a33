"""HTTP glue: routes, bearer-token check, JSON in and out. The work is in OpenAIServing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.core.errors import CascadeError
from services.http.catalog import Catalog
from services.http.errors import ApiError, unauthenticated
from services.http.metrics import RequestMetrics
from services.http.protocol import ChatCompletionRequest, CompletionRequest
from services.http.serving import OpenAIRequest, OpenAIServing

log = logging.getLogger(__name__)
Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")
# Request headers passed on to the gateway as gRPC metadata (lower-case, as both carry them).
PASSED_ON = ("authorization", "traceparent", "tracestate")


def create_app(
    *, serving: OpenAIServing, catalog: Catalog, api_keys_sha256: Sequence[str], max_body_bytes: int
) -> Starlette:
    guard = _Guard(api_keys_sha256)

    async def chat(request: Request) -> Response:
        return await _generate(request, serving, await _parse(request, ChatCompletionRequest, max_body_bytes))

    async def completions(request: Request) -> Response:
        return await _generate(request, serving, await _parse(request, CompletionRequest, max_body_bytes))

    async def models(request: Request) -> Response:
        return JSONResponse(catalog.listing().model_dump())

    async def model(request: Request) -> Response:
        return JSONResponse(catalog.get(request.path_params["name"]).model_dump())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/v1/chat/completions", guard(chat), methods=["POST"]),
        Route("/v1/completions", guard(completions), methods=["POST"]),
        Route("/v1/models", guard(models), methods=["GET"]),
        Route("/v1/models/{name:path}", guard(model), methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, CascadeError: _cascade_error, HTTPException: _http_error, Exception: _crash}
    middleware = [Middleware(RequestMetrics)]
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)  # type: ignore[arg-type]


class _Guard:
    """Requires ``Authorization: Bearer <key>`` with a key whose SHA-256 is configured (none configured: open)."""

    def __init__(self, digests: Sequence[str]) -> None:
        self._digests = [bytes.fromhex(d) for d in digests]

    def __call__(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if self._digests and not self._accepts(request.headers.get("authorization", "")):
                raise unauthenticated()
            return await endpoint(request)

        return guarded

    def _accepts(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        digest = hashlib.sha256(token.strip().encode()).digest()
        # Compare with every key, in constant time, so timing does not tell how close a guess was.
        return sum(hmac.compare_digest(digest, d) for d in self._digests) > 0


async def _body(request: Request, limit: int) -> bytes:
    """The body, read no further than just past ``limit`` bytes (a larger one: 413)."""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise HTTPException(413, f"the body is over the limit of {limit} bytes (http.max_body_bytes)")
    return bytes(body)


async def _parse(request: Request, model: type[BaseModel], limit: int) -> Any:
    try:
        return model.model_validate(json.loads(await _body(request, limit)))
    except json.JSONDecodeError as exc:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"the body is not valid JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = f"{param}: {first['msg']}" if param else first["msg"]
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, param=param) from None


async def _generate(request: Request, serving: OpenAIServing, body: OpenAIRequest) -> Response:
    # The caller's own token goes on to the gateway, which maps it to a tenant (gateway.tenants), and
    # so does its W3C trace context: the gateway's spans continue the HTTP caller's trace.
    metadata = tuple((k, v) for k in PASSED_ON if (v := request.headers.get(k)))
    if body.stream:
        stream = await _unless_disconnected(request, serving.stream(body, metadata=metadata))
        # no-cache: proxies must pass events on as they come, not hold the stream to cache it.
        headers = {**stream.headers, "cache-control": "no-cache"}
        return StreamingResponse(stream.events, media_type="text/event-stream", headers=headers)
    answer = await _unless_disconnected(request, serving.complete(body, metadata=metadata))
    return JSONResponse(answer.body, headers=answer.headers)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; cancelled (and so its gRPC call) if the client goes away first.

    The ASGI server notices a disconnect only when it is told to listen: a streamed response listens
    once it has started, but until then (a whole answer, a held stream's first text) nobody would.
    """
    job, gone = asyncio.ensure_future(work), asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        job.cancel()  # a no-op once it is done
        await asyncio.wait({job})  # its gRPC call is cancelled before this returns
    if job.cancelled():
        raise ApiError(grpc.StatusCode.CANCELLED, "the client went away")
    return job.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    level = logging.ERROR if exc.http.status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d: %s", request.method, request.url.path, exc.http.status, exc.message)
    return JSONResponse(exc.body(), status_code=exc.http.status)


async def _cascade_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CascadeError)
    return await _api_error(request, ApiError.from_cascade(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404 (no such route) and 405 (wrong method), in OpenAI's body.
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed unexpectedly", request.method, request.url.path)
    error = ApiError(grpc.StatusCode.INTERNAL, "internal error; see the HTTP front door's log")
    return JSONResponse(error.body(), status_code=500)
