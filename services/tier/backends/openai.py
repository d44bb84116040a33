"""A tier backend for any OpenAI-compatible server (``vllm serve`` is the one we deploy).

The cascade owns retries and deadlines, so the SDK never retries, every call is bounded
by the request's remaining time as a whole (not only per read), and every failure leaves
this module as a project error from ``services.core.errors``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

import httpx
import openai

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
        http_client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        # vLLM needs no key; pass a placeholder so the SDK never reads OPENAI_API_KEY from the environment.
        # The SDK (1.x and 3.x) accepts a plain httpx client; 3.x annotates the parameter with httpx2's type.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "EMPTY",
            max_retries=0,
            http_client=http_client,  # type: ignore[arg-type]
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
        except Exception as exc:  # nothing raw from the SDK or httpx may escape
            raise self._map_error(exc) from exc

    async def aclose(self) -> None:
        await self._client.close()

    async def _stream(self, generation: Generation, deadline: float) -> AsyncGenerator[Delta, None]:
        # Each await is bounded by the same absolute deadline; no timeout scope spans a `yield`,
        # so a cancellation is never delivered into the consumer's code.
        request = self._client.chat.completions.create(stream=True, **self._params(generation))
        chunks = await _before(deadline, request)
        finish_reason: str | None = None
        usage: Any = None
        logprob_count = 0
        text_chars = 0
        try:
            while True:
                try:
                    chunk = await _before(deadline, anext(chunks))
                except StopAsyncIteration:
                    break
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices[:1]:
                    delta = _text_delta(choice)
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
                    if delta is not None:
                        logprob_count += len(delta.token_logprobs)
                        text_chars += len(delta.text)
                        yield delta
        finally:
            await chunks.close()
        if finish_reason is None:
            raise TierUnavailable(f"{self.model} at {self.base_url}: stream ended early")
        yield self._final_delta(generation, finish_reason, usage, logprob_count, text_chars)

    def _params(self, generation: Generation) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in generation.messages],
            "max_tokens": generation.max_tokens,
            "stream_options": {"include_usage": True},
        }
        if generation.want_logprobs:
            params["logprobs"] = True
        if generation.temperature is not None:
            params["temperature"] = generation.temperature
        if generation.stop:
            params["stop"] = list(generation.stop)
        return params

    def _final_delta(
        self, generation: Generation, finish_reason: str, usage: Any, logprob_count: int, text_chars: int
    ) -> Delta:
        reason = "length" if finish_reason == "length" else "stop"
        if usage is not None:
            return Delta(
                finish_reason=reason,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
            )
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
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
            if isinstance(exc, httpx.ConnectTimeout) or isinstance(exc.__cause__, httpx.ConnectTimeout):
                return TierUnavailable(f"cannot connect to {self.base_url}: connect timed out")
            return DeadlineExceeded(f"{where} timed out")
        if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
            cause = exc.__cause__ or exc
            return TierUnavailable(f"cannot reach {self.base_url}: {type(cause).__name__}: {cause}")
        if isinstance(exc, openai.APIError):
            return TierUnavailable(f"{where} failed: {exc.message}")
        if isinstance(exc, openai.OpenAIError | httpx.HTTPError | ValueError):
            # ValueError: a chunk that is not JSON or not a chat completion chunk.
            return TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}")
        return InternalError(f"{where}: unexpected {type(exc).__name__}: {exc}")

    def _status_error(self, exc: openai.APIStatusError) -> CascadeError:
        status, message = exc.status_code, _server_message(exc)
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


def _text_delta(choice: Any) -> Delta | None:
    """The delta of one streamed choice, or None when it carries neither text nor logprobs."""
    text = (choice.delta.content or "") if choice.delta is not None else ""
    content = choice.logprobs.content if choice.logprobs is not None else None
    logprobs = tuple(token.logprob for token in content or ())
    if not text and not logprobs:
        return None
    return Delta(text=text, token_logprobs=logprobs)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return exc.message


async def _before(deadline: float, awaitable: Awaitable[_T]) -> _T:
    async with asyncio.timeout_at(deadline):
        return await awaitable
