"""OpenAI requests answered by the gateway: request -> GenerateRequest, gRPC answer -> OpenAI body.

Talks to the gateway only through the generated stub, so it depends on the public contract alone.
Streams are always STREAM_MODE_HELD: OpenAI's clients cannot take back text they have shown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2
from services.http import responses
from services.http.catalog import Catalog
from services.http.errors import ApiError
from services.http.protocol import ChatCompletionRequest, CompletionRequest
from services.http.responses import Envelope

OpenAIRequest = ChatCompletionRequest | CompletionRequest
Metadata = tuple[tuple[str, str], ...]  # gRPC metadata passed on with a call (the caller's token)
_ID_PREFIX = {"chat": "chatcmpl-", "text": "cmpl-"}


@dataclass(frozen=True, slots=True)
class Answer:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Stream:
    headers: dict[str, str]
    events: AsyncIterator[bytes]


class OpenAIServing:
    def __init__(
        self,
        *,
        stub: cascade_pb2_grpc.CascadeStub,
        catalog: Catalog,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stub, self._catalog, self._timeout_s, self._clock = stub, catalog, timeout_s, clock

    async def complete(self, body: OpenAIRequest, *, metadata: Metadata = ()) -> Answer:
        request, env = self._prepare(body)
        try:
            response = await self._stub.Generate(request, timeout=self._timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise ApiError.from_rpc(exc) from exc
        return Answer(responses.whole(env, response), responses.headers(response))

    async def stream(self, body: OpenAIRequest, *, metadata: Metadata = ()) -> Stream:
        """Open the stream and wait for its first text (or its end), so that a failure before any text
        is still an HTTP error status; later failures become an error event in the stream."""
        request, env = self._prepare(body)
        call = self._stub.GenerateStream(request, timeout=self._timeout_s, metadata=metadata)
        try:
            opening = await _opening(call)
        except BaseException:
            call.cancel()
            raise
        first = opening[-1]
        headers = responses.start_headers(first.request_id or request.request_id, first.tier)
        return Stream(headers, _events(env, call, opening, include_usage=body.include_usage()))

    def _prepare(self, body: OpenAIRequest) -> tuple[cascade_pb2.GenerateRequest, Envelope]:
        policy = self._catalog.policy(body.model)
        kind: responses.Kind = "chat" if isinstance(body, ChatCompletionRequest) else "text"
        # Chosen here, not by the gateway, so a stream's headers can carry it before the first chunk.
        request_id = uuid.uuid4().hex
        env = Envelope(kind=kind, id=_ID_PREFIX[kind] + request_id, model=body.model, created=int(self._clock()))
        return generate_request(body, policy=policy, request_id=request_id), env


def generate_request(
    body: OpenAIRequest, *, policy: cascade_pb2.Policy, request_id: str
) -> cascade_pb2.GenerateRequest:
    request = cascade_pb2.GenerateRequest(
        max_tokens=body.token_limit(),
        stop=body.stops(),
        policy=policy,
        tenant=body.user or "",
        tags={"api": "openai", **(body.metadata or {})},
        request_id=request_id,
        stream_mode=cascade_pb2.STREAM_MODE_HELD,
    )
    if body.temperature is not None:
        request.temperature = body.temperature
    if isinstance(body, ChatCompletionRequest):
        request.messages.extend(common_pb2.ChatMessage(role=m.cascade_role(), content=m.text()) for m in body.messages)
    else:
        request.prompt = body.prompt_text()
    return request


async def _opening(call: aio.UnaryStreamCall) -> list[cascade_pb2.GenerateChunk]:
    """The chunks up to the first that carries text or ends the answer."""
    chunks: list[cascade_pb2.GenerateChunk] = []
    while not chunks or not (chunks[-1].text or chunks[-1].final):
        chunk = await _read(call)
        if chunk is None:
            raise ApiError(grpc.StatusCode.INTERNAL, "the gateway ended the stream without an answer")
        chunks.append(chunk)
    return chunks


async def _read(call: aio.UnaryStreamCall) -> cascade_pb2.GenerateChunk | None:
    try:
        chunk = await call.read()
    except grpc.RpcError as exc:
        raise ApiError.from_rpc(exc) from exc
    if chunk is aio.EOF:
        return None
    if chunk.retract:  # never sent to a held stream; shown text cannot be withdrawn from an OpenAI client
        raise ApiError(grpc.StatusCode.INTERNAL, "the gateway retracted text in a held stream")
    return chunk  # type: ignore[no-any-return]


async def _events(
    env: Envelope, call: aio.UnaryStreamCall, opening: list[cascade_pb2.GenerateChunk], *, include_usage: bool
) -> AsyncIterator[bytes]:
    # The finally clause also runs when the HTTP client goes away (the ASGI server cancels this
    # generator): cancelling the gRPC call makes the gateway stop the tier's generation.
    try:
        if env.kind == "chat":
            yield responses.sse(responses.delta(env, "", first=True))
        async for chunk in _chunks(call, opening):
            if chunk.text:
                yield responses.sse(responses.delta(env, chunk.text))
            if chunk.final:
                yield responses.sse(responses.finish(env, chunk))
                if include_usage:
                    yield responses.sse(responses.usage_chunk(env, chunk))
                break
        else:
            raise ApiError(grpc.StatusCode.INTERNAL, "the gateway ended the stream without its final chunk")
    except ApiError as exc:
        yield responses.sse(exc.body())
    finally:
        call.cancel()
    yield responses.DONE


async def _chunks(
    call: aio.UnaryStreamCall, opening: list[cascade_pb2.GenerateChunk]
) -> AsyncIterator[cascade_pb2.GenerateChunk]:
    for chunk in opening:
        yield chunk
    while (more := await _read(call)) is not None:
        yield more
