"""A tier backend for any OpenAI-compatible server (``vllm serve`` is the one we deploy).

Plain ``aiohttp`` streaming, SSE split into events here and each event decoded into dicts, not the
``openai`` SDK: profiling the overhead bench at concurrency 32 put 77% of the tier worker's CPU inside
the SDK (a pydantic model per chunk, request building, retry wrappers), which halved the cascade's
throughput on two cores. Nor ``httpx``, which replaced the SDK at first: py-spy on the tier worker under
bench.overhead (policy route, concurrency 32) put 54% of its CPU under OpenAIBackend.stream, 42% in
httpx/httpcore/anyio request machinery alone, and a streamed 16-token call cost 2.8-4.4 ms of CPU with
httpx against 0.5-1.1 ms with aiohttp on the same cores.

The cascade owns retries and deadlines, so nothing here retries, every call is bounded by the
request's remaining time as a whole (not only per read), and every failure leaves this module as a
project error from ``services.core.errors``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import AsyncExitStack, aclosing, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from services.core.errors import (
    CascadeError,
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    Overloaded,
    TierUnavailable,
)
from services.tier.backends.base import Delta, Generation, SampleAnswer

_T = TypeVar("_T")
# How long to wait for the end of the body after `[DONE]`, so the connection can be reused.
_DRAIN_S = 0.1


@dataclass(frozen=True, slots=True)
class _Piece:
    """What one chunk says about one choice (vLLM sends one choice per chunk, interleaved by index)."""

    index: int
    text: str
    token_logprobs: tuple[float, ...]
    finish_reason: str | None


# What one chunk carries: its pieces of choices and its (prompt, completion) usage.
_Chunk = tuple[list[_Piece], tuple[int, int] | None]


@dataclass(slots=True)
class _Answer:
    text: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None


class _Choices:
    """The ``n`` answers of one call: choice 0 streams on, the others are kept for the final delta."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._answers = [_Answer() for _ in range(n)]
        self.logprob_count = self.text_chars = 0

    def add(self, piece: _Piece) -> Delta | None:
        """Record ``piece``; the delta to stream when it belongs to choice 0 and carries something."""
        answer = self._answers[piece.index]
        answer.finish_reason = piece.finish_reason or answer.finish_reason
        self.logprob_count += len(piece.token_logprobs)
        self.text_chars += len(piece.text)
        if not (piece.text or piece.token_logprobs):
            return None
        if piece.index == 0:
            return Delta(text=piece.text, token_logprobs=piece.token_logprobs)
        answer.text.append(piece.text)
        answer.token_logprobs.extend(piece.token_logprobs)
        return None

    @property
    def finished(self) -> bool:
        return all(answer.finish_reason is not None for answer in self._answers)

    def first_reason(self) -> str:
        return _reason(self._answers[0].finish_reason)

    def samples(self) -> tuple[SampleAnswer, ...]:
        return tuple(
            SampleAnswer(
                text="".join(a.text), token_logprobs=tuple(a.token_logprobs), finish_reason=_reason(a.finish_reason)
            )
            for a in self._answers[1:]
        )


def _reason(finish_reason: str | None) -> str:
    return "length" if finish_reason == "length" else "stop"


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
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._connect_timeout_s, self._max_connections = connect_timeout_s, max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Opened on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # Each call is bounded by its own deadline (see _before); only connecting has its own limit.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
            )
        return self._session

    async def stream(self, generation: Generation) -> AsyncIterator[Delta]:
        # The tier's own limit (tiers.<name>.openai.timeout_s) or the request's deadline, whichever ends first.
        timeout_s = self.timeout_s if generation.timeout_s is None else min(self.timeout_s, generation.timeout_s)
        if timeout_s <= 0:
            raise DeadlineExceeded(f"no time left for {self.model} at {self.base_url}")
        deadline = asyncio.get_running_loop().time() + timeout_s
        answer = self._whole(generation, deadline) if generation.whole else self._stream(generation, deadline)
        try:
            async with aclosing(answer) as deltas:
                async for delta in deltas:
                    yield delta
        except CascadeError:
            raise
        except aiohttp.ClientError as exc:  # before TimeoutError: aiohttp's connect timeout is one too
            raise self._map_error(exc) from exc
        except TimeoutError:
            raise DeadlineExceeded(f"{self.model} at {self.base_url} did not finish within {timeout_s:.3g} s") from None
        except Exception as exc:  # nothing raw from aiohttp may escape
            raise self._map_error(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _stream(self, generation: Generation, deadline: float) -> AsyncGenerator[Delta, None]:
        # Each await is bounded by the same absolute deadline; no timeout scope spans a `yield`,
        # so a cancellation is never delivered into the consumer's code.
        choices = _Choices(max(generation.n, 1))
        usage: tuple[int, int] | None = None
        async with AsyncExitStack() as stack:
            post = self._client().post(self._url, json=self._body(generation))
            response = await _before(deadline, stack.enter_async_context(post))
            if response.status >= 400:
                raise self._status_error(response.status, await _before(deadline, response.text()))
            if response.content_type != "text/event-stream":
                raise TierUnavailable(
                    f"{self.model} at {self.base_url} sent a malformed response: "
                    f"not an event stream (content-type {response.content_type!r})"
                )
            events, done = _SseData(), False
            while not done and (data := await _before(deadline, response.content.readany())):
                for event in events.feed(data):
                    if event.startswith("[DONE]"):
                        done = True
                        await _drain(response, deadline)
                        break
                    pieces, chunk_usage = self._read_chunk(event, choices.n)
                    usage = chunk_usage or usage
                    for piece in pieces:
                        if (delta := choices.add(piece)) is not None:
                            yield delta
        # With n > 1 the other choices may still be running when choice 0 finishes: the
        # final delta waits for the end of the stream, so it carries every sample.
        if not choices.finished:
            raise TierUnavailable(f"{self.model} at {self.base_url}: stream ended early")
        yield self._final_delta(generation, choices, usage)

    async def _whole(self, generation: Generation, deadline: float) -> AsyncGenerator[Delta, None]:
        """The answer in one response (``"stream": false``), as one final delta: a unary caller sees
        nothing before the end anyway, and one JSON body costs a fraction of parsing an event per token
        (the SSE parsing was a third of the gateway's Python time under bench.overhead, tiers embedded)."""
        choices = _Choices(max(generation.n, 1))
        async with asyncio.timeout_at(deadline):  # no yield inside: one timer for the whole call
            async with self._client().post(self._url, json=self._body(generation, stream=False)) as response:
                if response.status >= 400:
                    raise self._status_error(response.status, await response.text())
                if response.content_type != "application/json":
                    raise TierUnavailable(
                        f"{self.model} at {self.base_url} sent a malformed response: "
                        f"not JSON (content-type {response.content_type!r})"
                    )
                body = await response.read()
        pieces, usage = self._read_chunk(body.decode(), choices.n, whole=True)
        text: list[str] = []
        logprobs: list[float] = []
        for piece in pieces:
            if (delta := choices.add(piece)) is not None:
                text.append(delta.text)
                logprobs.extend(delta.token_logprobs)
        if not choices.finished:
            raise TierUnavailable(f"{self.model} at {self.base_url}: an answer without a finish reason")
        final = self._final_delta(generation, choices, usage)
        yield dataclasses.replace(final, text="".join(text), token_logprobs=tuple(logprobs))

    def _body(self, generation: Generation, *, stream: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in generation.messages],
            "max_tokens": generation.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if generation.want_logprobs:
            body["logprobs"] = True
        if generation.temperature is not None:
            body["temperature"] = generation.temperature
        if generation.n > 1:
            body["n"] = generation.n
        if generation.stop:
            body["stop"] = list(generation.stop)
        return body

    def _read_chunk(self, data: str, n: int, *, whole: bool = False) -> _Chunk:
        """One streamed ``chat.completion.chunk``, or (``whole``) a whole ``chat.completion``."""
        where = f"{self.model} at {self.base_url}"
        try:
            chunk = json.loads(data)
            if isinstance(chunk, dict) and chunk.get("error"):
                raise TierUnavailable(f"{where} failed: {_error_message(chunk['error'])}")
            return _parse_chunk(chunk, n, key="message" if whole else "delta")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}") from exc

    def _final_delta(self, generation: Generation, choices: _Choices, usage: tuple[int, int] | None) -> Delta:
        reason, samples = choices.first_reason(), choices.samples()
        if usage is not None:
            return Delta(finish_reason=reason, input_tokens=usage[0], output_tokens=usage[1], samples=samples)
        # No usage chunk: count what we saw (one logprob per token), else ~4 characters a token;
        # over all choices, as the server's usage counts them.
        prompt_chars = sum(len(m.content) for m in generation.messages)
        return Delta(
            finish_reason=reason,
            input_tokens=math.ceil(prompt_chars / 4),
            output_tokens=choices.logprob_count or math.ceil(choices.text_chars / 4),
            usage_estimated=True,
            samples=samples,
        )

    def _map_error(self, exc: Exception) -> CascadeError:
        where = f"{self.model} at {self.base_url}"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return TierUnavailable(f"cannot connect to {self.base_url}: connect timed out")
        if isinstance(exc, aiohttp.ClientResponseError):  # e.g. not HTTP at all
            return TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}")
        if isinstance(exc, aiohttp.ClientError):  # refused, reset, or dropped mid-body (ClientPayloadError)
            return TierUnavailable(f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}")
        if isinstance(exc, ValueError):  # undecodable bytes
            return TierUnavailable(f"{where} sent a malformed response: {type(exc).__name__}: {exc}")
        return InternalError(f"{where}: unexpected {type(exc).__name__}: {exc}")

    def _status_error(self, status: int, text: str) -> CascadeError:
        message = _server_message(status, text)
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


class _SseData:
    """The data of each server-sent event in a byte stream, as it arrives (the part of the SSE format
    vLLM uses: ``data:`` lines, events ended by a blank line; comments and other fields are skipped)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        *events, self._buffer = buffer.split(b"\n\n")
        return [text for event in events if (text := _event_data(event)) is not None]


def _event_data(event: bytes) -> str | None:
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).decode() if lines else None


def _parse_chunk(chunk: dict[str, Any], n: int, *, key: str = "delta") -> _Chunk:
    """One ``chat.completion.chunk`` (its choices' text under ``delta``), or a whole ``chat.completion``
    (under ``message``); raises ValueError, TypeError, KeyError or AttributeError when malformed."""
    usage = chunk.get("usage")
    counts = (_count(usage["prompt_tokens"]), _count(usage["completion_tokens"])) if usage is not None else None
    return [_parse_choice(choice, n, key) for choice in chunk.get("choices") or ()], counts


def _parse_choice(choice: dict[str, Any], n: int, key: str = "delta") -> _Piece:
    index = choice.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"choice index {index!r} outside the {n} asked for")
    text = (choice.get(key) or {}).get("content") or ""
    content = (choice.get("logprobs") or {}).get("content") or ()
    logprobs = tuple(float(token["logprob"]) for token in content)
    return _Piece(index=index, text=text, token_logprobs=logprobs, finish_reason=choice.get("finish_reason"))


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a token count, got {value!r}")
    return value


def _error_message(error: object) -> str:
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else "An error occurred during streaming"


def _server_message(status: int, text: str) -> str:
    """The message of an OpenAI error body (``{"error": {"message": ...}}`` or vLLM's older flat shape)."""
    text = text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        for source in (error, body):
            if isinstance(source, dict) and isinstance(source.get("message"), str):
                return str(source["message"])
    return text[:500] or f"Error code: {status}"


async def _before(deadline: float, awaitable: Awaitable[_T]) -> _T:
    async with asyncio.timeout_at(deadline):
        return await awaitable


async def _drain(response: aiohttp.ClientResponse, deadline: float) -> None:
    """Read the rest of the body after ``[DONE]`` (a chunked body's last empty chunk), so the
    connection goes back to the pool instead of being closed.

    The answer is complete by then, so a failure here must not turn it into an error.
    """
    with suppress(aiohttp.ClientError, TimeoutError):
        async with asyncio.timeout_at(min(deadline, asyncio.get_running_loop().time() + _DRAIN_S)):
            await response.content.read()
