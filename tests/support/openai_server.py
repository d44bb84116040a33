"""A real OpenAI-compatible HTTP server for tests and benchmarks, run as its own process.

It speaks the part of the API that ``vllm serve`` exposes and the cascade uses: ``GET /v1/models``,
``GET /health``, ``POST /v1/chat/completions`` and ``POST /v1/completions``, streamed (SSE) or not,
with logprobs, usage, ``max_tokens`` and ``stop``, and errors in OpenAI's shape.

Answers are deterministic: the words come from a hash of the prompt, and every token's logprob is
``ln(confidence)`` where the prompt may set the confidence with ``[[confidence=0.3]]`` (default 0.9).
``n`` answers per call are served like vLLM does: one choice per chunk, interleaved by ``index``, each
with its own finish reason, and usage summed over the choices. Choice 0 is the one-answer reply; the
others hash the prompt with their index, unless ``POST /_control`` scripts them (``answers``).
Tests inject faults through ``POST /_control`` (see :class:`Faults`), clear them with
``POST /_control/reset`` and count the generation calls that reached the server with ``GET /_stats``.

Start it from tests with :func:`start_fake_openai`, or by hand::

    python -m tests.support.openai_server --port 8000 --model small --model large
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.openai_model import (
    DEFAULT_TOKENS,
    MAX_N,
    Answer,
    ChatCompletionRequest,
    CompletionRequest,
    Faults,
    answer_tokens,
    generate,
    scripted_tokens,
)

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_TOKENS",
    "MAX_N",
    "FakeOpenAI",
    "answer_tokens",
    "scripted_tokens",
    "start_fake_openai",
]
DEFAULT_MODELS = ("fake-model", "fake-small", "fake-large")
_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 422: "BadRequestError", 429: "RateLimitError"}


# ---- wire shapes ------------------------------------------------------------------------------


def _chat_logprobs(tokens: Iterable[str], logprob: float, top: int | None) -> dict[str, Any]:
    def entry(token: str) -> dict[str, Any]:
        item = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        return {**item, "top_logprobs": [item] if top else []}

    return {"content": [entry(t) for t in tokens]}


def _completion_logprobs(tokens: list[str], logprob: float, offset: int = 0) -> dict[str, Any]:
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [logprob] * len(tokens),
        "top_logprobs": [{t: logprob} for t in tokens],
        "text_offset": offsets,
    }


def _usage(answers: Sequence[Answer]) -> dict[str, int]:
    """Usage of a call: the prompt once, the completion tokens of every choice (as vLLM counts)."""
    emitted = sum(len(answer.tokens) for answer in answers)
    prompt = answers[0].prompt_tokens
    return {"prompt_tokens": prompt, "completion_tokens": emitted, "total_tokens": prompt + emitted}


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "BadRequestError")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(_error_body(status, message), status_code=status)


class _Dropped(Exception):
    """Raised inside a streaming body to make uvicorn close the connection mid-response."""


@dataclass(slots=True)
class _Call:
    """One generation call as both endpoints need it."""

    kind: Literal["chat", "text"]
    request: ChatCompletionRequest | CompletionRequest
    answers: list[Answer]  # one per choice
    faults: Faults
    id: str = field(default_factory=lambda: f"fake-{uuid.uuid4().hex[:16]}")
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def logprobs(self, index: int, tokens: list[str], offset: int = 0) -> dict[str, Any] | None:
        logprob = self.answers[index].logprob
        if isinstance(self.request, ChatCompletionRequest):
            if not self.request.logprobs:
                return None
            return _chat_logprobs(tokens, logprob, self.request.top_logprobs)
        if self.request.logprobs is None:
            return None
        return _completion_logprobs(tokens, logprob, offset)

    def choice(
        self, index: int, tokens: list[str], finish: str | None, *, offset: int = 0, streamed: bool
    ) -> dict[str, Any]:
        text = "".join(tokens)
        logprobs = self.logprobs(index, tokens, offset)
        choice: dict[str, Any] = {"index": index, "logprobs": logprobs, "finish_reason": finish}
        if self.kind == "text":
            choice["text"] = text
        elif streamed:
            choice["delta"] = {"content": text} if tokens else {}
        else:
            choice["message"] = {"role": "assistant", "content": text}
        return choice

    def envelope(self, choices: list[dict[str, Any]], usage: dict[str, int] | None, *, chunk: bool) -> dict[str, Any]:
        obj = self.object + (".chunk" if chunk and self.kind == "chat" else "")
        body: dict[str, Any] = {"id": self.id, "object": obj, "created": self.created, "model": self.request.model}
        body["choices"] = choices
        if usage is not None or not chunk:
            body["usage"] = usage
        return body


# ---- serving: one body for both endpoints ---------------------------------------------------------


async def _full(call: _Call) -> Response:
    faults = call.faults
    longest = max(len(answer.tokens) for answer in call.answers)
    await asyncio.sleep(faults.delay_first_token_s + faults.delay_per_token_s * longest)
    choices = [call.choice(i, a.tokens, a.finish_reason, streamed=False) for i, a in enumerate(call.answers)]
    body = call.envelope(choices, None if faults.omit_usage else _usage(call.answers), chunk=False)
    if faults.drop_after_tokens is not None:
        return StreamingResponse(_truncated(json.dumps(body).encode()), media_type="application/json")
    return JSONResponse(body)


async def _truncated(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise _Dropped


async def _events(call: _Call) -> AsyncIterator[bytes]:
    faults = call.faults
    if call.kind == "chat":
        for index in range(len(call.answers)):
            first = call.choice(index, [], None, streamed=True) | {"delta": {"role": "assistant", "content": ""}}
            yield _sse(call.envelope([first], None, chunk=True))
    await asyncio.sleep(faults.delay_first_token_s)
    emitted = 0
    for index, token, offset in _interleaved(call.answers):
        if token is None and faults.drop_after_tokens is not None:
            raise _Dropped  # a drop always comes before any choice finishes
        if token is None:
            finish = call.answers[index].finish_reason
            yield _sse(call.envelope([call.choice(index, [], finish, streamed=True)], None, chunk=True))
            continue
        if faults.drop_after_tokens is not None and emitted >= faults.drop_after_tokens:
            raise _Dropped
        if emitted and faults.delay_per_token_s:
            await asyncio.sleep(faults.delay_per_token_s)
        yield _sse(call.envelope([call.choice(index, [token], None, offset=offset, streamed=True)], None, chunk=True))
        emitted += 1
    if call.request.include_usage() and not faults.omit_usage:
        yield _sse(call.envelope([], _usage(call.answers), chunk=True))
    yield b"data: [DONE]\n\n"


def _interleaved(answers: Sequence[Answer]) -> Iterator[tuple[int, str | None, int]]:
    """(choice, token, text offset) round-robin over the choices, as vLLM's engine steps them;
    token None marks a choice's end."""
    offsets = [0] * len(answers)
    for position in range(max(len(answer.tokens) for answer in answers) + 1):
        for index, answer in enumerate(answers):
            if position < len(answer.tokens):
                yield index, answer.tokens[position], offsets[index]
                offsets[index] += len(answer.tokens[position])
            elif position == len(answer.tokens):
                yield index, None, offsets[index]


def _sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


# ---- HTTP handlers (thin) -------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    models: tuple[str, ...]
    faults: Faults = field(default_factory=Faults)
    requests: int = 0


async def _generation(request: Request) -> Response:
    state: _State = request.app.state.fake
    state.requests += 1
    if state.faults.status_code is not None:
        return _error(state.faults.status_code, f"injected fault: HTTP {state.faults.status_code}")
    chat = request.url.path.endswith("/chat/completions")
    try:
        raw = await request.json()
        parsed = ChatCompletionRequest.model_validate(raw) if chat else CompletionRequest.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        return _error(400, _validation_message(exc))
    if parsed.model not in state.models:
        return _error(404, f"The model `{parsed.model}` does not exist.")
    try:
        call = _call(parsed, state.faults)
    except ValueError as exc:
        return _error(400, str(exc))
    if parsed.stream:
        return StreamingResponse(_events(call), media_type="text/event-stream")
    return await _full(call)


def _call(request: ChatCompletionRequest | CompletionRequest, faults: Faults) -> _Call:
    if isinstance(request, ChatCompletionRequest):
        users = [m.text() for m in request.messages if m.role == "user"]
        prompt, everything = (users[-1] if users else ""), " ".join(m.text() for m in request.messages)
        max_tokens = request.max_completion_tokens or request.max_tokens
        kind: Literal["chat", "text"] = "chat"
    else:
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if len(prompts) != 1:
            raise ValueError("this server answers exactly one prompt per request")
        prompt = everything = prompts[0]
        max_tokens, kind = request.max_tokens, "text"
    answers = [
        generate(prompt, everything, max_tokens=max_tokens, stops=request.stops(), faults=faults, choice=i)
        for i in range(request.n)
    ]
    return _Call(kind=kind, request=request, answers=answers, faults=faults)


def _validation_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return f"invalid JSON body: {exc}"


async def _models(request: Request) -> Response:
    state: _State = request.app.state.fake
    state.requests += 1
    if state.faults.status_code is not None:
        return _error(state.faults.status_code, f"injected fault: HTTP {state.faults.status_code}")
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake-openai"} for m in state.models]
    return JSONResponse({"object": "list", "data": data})


async def _health(request: Request) -> Response:
    state: _State = request.app.state.fake
    return Response(status_code=state.faults.status_code or 200)


async def _control(request: Request) -> Response:
    state: _State = request.app.state.fake
    try:
        changes = Faults.model_validate(await request.json()).model_dump(exclude_unset=True)
    except (ValidationError, ValueError) as exc:
        return _error(400, _validation_message(exc))
    state.faults = state.faults.model_copy(update=changes)
    return JSONResponse(state.faults.model_dump())


async def _reset(request: Request) -> Response:
    state: _State = request.app.state.fake
    state.faults, state.requests = Faults(), 0
    return JSONResponse(state.faults.model_dump())


async def _stats(request: Request) -> Response:
    return JSONResponse({"requests": request.app.state.fake.requests})


def create_app(models: Sequence[str] = DEFAULT_MODELS) -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", _generation, methods=["POST"]),
            Route("/v1/completions", _generation, methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
            Route("/health", _health, methods=["GET"]),
            Route("/_control", _control, methods=["POST"]),
            Route("/_control/reset", _reset, methods=["POST"]),
            Route("/_stats", _stats, methods=["GET"]),
        ]
    )
    app.state.fake = _State(models=tuple(models))
    return app


# ---- process: CLI and a handle for tests -----------------------------------------------------------


class _HideDrops(logging.Filter):
    """An injected drop is not a server error; keep it out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


def serve(*, host: str, port: int, models: Sequence[str]) -> None:
    """Bind first (port 0 picks a free one), print the port on stdout, then serve until signalled."""
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when it is given explicitly, and
    # without it Nagle's algorithm adds ~40 ms to every response on a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(create_app(models), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_HideDrops())
    asyncio.run(server.serve(sockets=[sock]))


@dataclass(slots=True)
class FakeOpenAI:
    """A running fake server process; ``base_url`` ends in ``/v1``."""

    process: subprocess.Popen[str]
    host: str
    port: int
    models: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def control(self, **faults: Any) -> dict[str, Any]:
        """Set faults (see :class:`Faults`); fields not given keep their value. Returns all faults."""
        return await self._call("POST", "/_control", faults)

    async def reset(self) -> dict[str, Any]:
        """Clear all faults and the request counter."""
        return await self._call("POST", "/_control/reset", {})

    async def stats(self) -> dict[str, Any]:
        """``{"requests": n}``: generation and model-list calls that reached the server since the last reset."""
        return await self._call("GET", "/_stats", None)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            response = await client.request(method, path, json=body)
        response.raise_for_status()
        return dict(response.json())


def start_fake_openai(
    port: int = 0, *, host: str = "127.0.0.1", models: Sequence[str] = DEFAULT_MODELS, startup_timeout_s: float = 15.0
) -> FakeOpenAI:
    """Start the server in a child process and wait until it answers ``/health``."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.support.openai_server", "--host", host, "--port", str(port)]
    for model in models:
        command += ["--model", model]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    handle = FakeOpenAI(process=process, host=host, port=0, models=tuple(models))
    try:
        handle.port = _read_port(process, startup_timeout_s)
        _wait_healthy(handle, startup_timeout_s)
    except BaseException:
        handle.stop()
        raise
    return handle


def _read_port(process: subprocess.Popen[str], timeout_s: float) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("LISTENING "):
        raise RuntimeError(f"fake OpenAI server did not start (exit code {process.poll()}, said {line!r})")
    return int(line.split()[1])


def _wait_healthy(handle: FakeOpenAI, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"fake OpenAI server exited with code {handle.process.returncode}")
        try:
            if httpx.get(f"{handle.url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"fake OpenAI server on port {handle.port} not healthy after {timeout_s} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.openai_server",
        description="A deterministic OpenAI-compatible server with fault injection, for tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one (printed)")
    parser.add_argument(
        "--model", action="append", dest="models", help=f"a served model name, repeatable (default {DEFAULT_MODELS})"
    )
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port, models=tuple(args.models or DEFAULT_MODELS))


if __name__ == "__main__":
    main()
