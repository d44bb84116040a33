"""A tier backend for any OpenAI-compatible server (``vllm serve`` is the one we deploy).

Plain ``httpx`` streaming, SSE parsed by ``httpx-sse`` and each event decoded into dicts, not the
``openai`` SDK: profiling the overhead bench at concurrency 32 put 77% of the tier worker's CPU inside
the SDK (a pydantic model per chunk, request building, retry wrappers), which halved the cascade's
throughput on two cores.

The cascade owns retries and deadlines, so nothing here retries, every call is bounded by the
request's remaining time as a whole (not only per read), and every failure leaves this module as a
project error from ``services.core.errors``.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AsyncExitStack, aclosing, suppress
from typing import Any, TypeVar

import httpx
from httpx_sse import ServerSentEvent, SSEError, aconnect_sse

from services.core.errors import (
    CascadeError,
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    Overloaded,
    TierUnavailable,
)
from services.tier.backends.base import Delta, Generation

_T = TypeVar("_T")
# How long to wait for the end of the body after `[DONE]`, so the connection can be reused.
_DRAIN_S = 0.1
# What one chunk carries: its text/logprobs delta, its finish reason, its (prompt, completion) usage.
_Chunk = tuple[Delta | None, str | None, tuple[int, int] | None]


class OpenAIBackend:
    """Streams chat completions from an OpenAI-compatible HTTP server."""

    kind = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 2.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self._url = f"{self.base_url}/chat/completions"
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )

    async def stream(self, generation: Generation) -> AsyncIterator[Delta]:
        timeout_s = self.timeout_s if generation.timeout_s is None else generation.timeout_s
        if timeout_s <= 0:
            raise DeadlineExceeded(f"no time left for {self.model} at {self.base_url}")
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with aclosing(self._stream(generation, deadline)) as deltas:
                async for delta in deltas:
                    yield delta
        except CascadeError:
            raise
        except TimeoutError:
            raise DeadlineExceeded(f"{self.model} at {self.base_url} did not finish within {timeout_s:.3g} s") from None
        except Exception as exc:  # nothing raw from httpx may escape
            raise self._map_error(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _stream(self, generation: Generation, deadline: float) -> AsyncGenerator[Delta, None]:
        # Each await is bounded by the same absolute deadline; no timeout scope spans a `yield`,
        # so a cancellation is never delivered into the consumer's code.
        finish_reason: str | None = None
        usage: tuple[int, int] | None = None
        logprob_count = text_chars = 0
        async with AsyncExitStack() as stack:
            connect = aconnect_sse(self._client, "POST", self._url, json=self._body(generation))
            source = await _before(deadline, stack.enter_async_context(connect))
            if not source.response.is_success:
                await _before(deadline, source.response.aread())
                raise self._status_error(source.response)
            events = await stack.enter_async_context(aclosing(source.aiter_sse()))
            while (event := await _before(deadline, anext(events, None))) is not None:
                if event.data.startswith("[DONE]"):
                    await _drain(events, deadline)
                    break
                delta, reason, chunk_usage = self._read_chunk(event)
                finish_reason = reason or finish_reason
                usage = chunk_usage or usage
                if delta is not None:
                    logprob_count += len(delta.token_logprobs)
                    text_chars += len(delta.text)
                    yield delta
        if finish_reason is None:
            raise TierUnavailable(f"{self.model} at {self.base_url}: stream ended early")
        yield self._final_delta(generation, finish_reason, usage, logprob_count, text_chars)

    def _body(self, generation: Generation) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in generation.messages],
            "max_tokens": generation.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if generation.want_logprobs:
            body["logprobs"] = True
        if generation.temperature is not None:
            body["temperature"] = generation.temperature
        if generation.stop:
            body["stop"] = list(generation.stop)
        return body

    def _read_chunk(self, event: ServerSentEvent) -> _Chunk:
        where = f"{self.model} at {self.base_url}"
        try:
            chunk = json.loads(event.data)
            if isinstance(chunk, dict) and chunk.get("error"):
                raise TierUnavailable(f"{where} failed: {_error_message(chunk['error'])}")
            return _parse_chunk(chunk)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}") from exc

    def _final_delta(
        self,
        generation: Generation,
        finish_reason: str,
        usage: tuple[int, int] | None,
        logprob_count: int,
        text_chars: int,
    ) -> Delta:
        reason = "length" if finish_reason == "length" else "stop"
        if usage is not None:
            return Delta(finish_reason=reason, input_tokens=usage[0], output_tokens=usage[1])
        # No usage chunk: count what we saw (one logprob per token), else ~4 characters a token.
        prompt_chars = sum(len(m.content) for m in generation.messages)
        output_tokens = logprob_count if logprob_count else math.ceil(text_chars / 4)
        return Delta(
            finish_reason=reason,
            input_tokens=math.ceil(prompt_chars / 4),
            output_tokens=output_tokens,
            usage_estimated=True,
        )

    def _map_error(self, exc: Exception) -> CascadeError:
        where = f"{self.model} at {self.base_url}"
        if isinstance(exc, httpx.ConnectTimeout):
            return TierUnavailable(f"cannot connect to {self.base_url}: connect timed out")
        if isinstance(exc, httpx.TimeoutException):
            return DeadlineExceeded(f"{where} timed out")
        if isinstance(exc, httpx.TransportError) and not isinstance(exc, SSEError):
            return TierUnavailable(f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}")
        if isinstance(exc, httpx.HTTPError | ValueError):
            # SSEError: not an event stream; ValueError: undecodable bytes.
            return TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}")
        return InternalError(f"{where}: unexpected {type(exc).__name__}: {exc}")

    def _status_error(self, response: httpx.Response) -> CascadeError:
        status, message = response.status_code, _server_message(response)
        where = f"{self.model} at {self.base_url}"
        if status == 429:
            return Overloaded(f"{where} is overloaded (HTTP 429): {message}")
        if status in (400, 413, 422):
            return InvalidRequest(f"{where} rejected the request (HTTP {status}): {message}")
        if status == 404:
            return TierUnavailable(f"model {self.model!r} is not served at {self.base_url} (HTTP 404): {message}")
        if status == 408:
            return DeadlineExceeded(f"{where} timed out (HTTP 408): {message}")
        return TierUnavailable(f"{where} failed (HTTP {status}): {message}")


def _parse_chunk(chunk: dict[str, Any]) -> _Chunk:
    """One ``chat.completion.chunk``; raises ValueError, TypeError, KeyError or AttributeError when malformed."""
    usage = chunk.get("usage")
    counts = (_count(usage["prompt_tokens"]), _count(usage["completion_tokens"])) if usage is not None else None
    choices = chunk.get("choices") or ()
    if not choices:
        return None, None, counts
    choice = choices[0]
    text = (choice.get("delta") or {}).get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or ()
    logprobs = tuple(float(token["logprob"]) for token in content)
    delta = Delta(text=text, token_logprobs=logprobs) if text or logprobs else None
    return delta, choice.get("finish_reason"), counts


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a token count, got {value!r}")
    return value


def _error_message(error: object) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"


def _server_message(response: httpx.Response) -> str:
    """The message of an OpenAI error body (``{"error": {"message": ...}}`` or vLLM's older flat shape)."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        for source in (error, body):
            if isinstance(source, dict) and isinstance(source.get("message"), str):
                return str(source["message"])
    return text[:500] or f"Error code: {response.status_code}"


async def _before(deadline: float, awaitable: Awaitable[_T]) -> _T:
    async with asyncio.timeout_at(deadline):
        return await awaitable


async def _drain(events: AsyncIterator[ServerSentEvent], deadline: float) -> None:
    """Read the rest of the body after ``[DONE]`` so the connection goes back to the pool.

    The answer is complete by then, so a failure here must not turn it into an error.
    """
    with suppress(httpx.HTTPError, TimeoutError):
        async with asyncio.timeout_at(min(deadline, asyncio.get_running_loop().time() + _DRAIN_S)):
            async for _ in events:
                pass
