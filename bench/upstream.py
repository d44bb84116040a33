"""A minimal OpenAI-compatible upstream for capacity benchmarks: cheap enough never to be the bottleneck.

    python -m bench.upstream [--port 8000] [--processes 1]

The project's fake server (tests/support/openai_server.py: Starlette, pydantic, one JSON dump per token)
tops out near 350 requests/s on two cores, below the cascade it is meant to measure. This one answers
``POST /v1/chat/completions`` (and ``/v1/completions``) with a fixed streamed completion, ``max_tokens``
tokens (16 when absent) with a logprob each, then a usage chunk and ``[DONE]``, as one pre-built
``text/event-stream`` body with a Content-Length (with ``"stream": false``, the same completion as one
JSON body); ``GET /health`` and ``GET /v1/models`` answer too.
HTTP/1.1 keep-alive over raw asyncio protocols, parsed by hand: a request costs a few tens of
microseconds. ``--processes N`` forks N servers accepting on one socket.

Not a test double: there are no faults, no prompt-dependent answers and no ``n``. Tests use the fake server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

import uvloop

MODEL = "fake-model"
WORDS = ("The", " answer", " is", " four", ",", " since", " two", " plus", " two", " makes", " four", ".")
LOGPROB = -0.105  # ln(0.9): every token sure enough that the cascade keeps the small answer
DEFAULT_TOKENS = 16
_MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens"\s*:\s*(\d+)')
_NOT_STREAMED = re.compile(rb'"stream"\s*:\s*false')


def tokens(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(count)]


def _event(body: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


@lru_cache(maxsize=64)
def stream_body(count: int) -> bytes:
    """The whole SSE body of a chat completion of ``count`` tokens (cached per count)."""
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    events = [_event({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})]
    words = tokens(count)
    for i, word in enumerate(words):
        logprobs = {"content": [{"token": word, "logprob": LOGPROB, "bytes": list(word.encode()), "top_logprobs": []}]}
        finish = "length" if i == count - 1 else None
        choice = {"index": 0, "delta": {"content": word}, "logprobs": logprobs, "finish_reason": finish}
        events.append(_event({**head, "choices": [choice]}))
    usage = {"prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count}
    events.append(_event({**head, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


@lru_cache(maxsize=64)
def whole_body(count: int) -> bytes:
    """The JSON body of the same chat completion, not streamed (``"stream": false``)."""
    words = tokens(count)
    logprobs = [{"token": w, "logprob": LOGPROB, "bytes": list(w.encode()), "top_logprobs": []} for w in words]
    message = {"role": "assistant", "content": "".join(words)}
    choice = {"index": 0, "message": message, "logprobs": {"content": logprobs}, "finish_reason": "length"}
    usage = {"prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count}
    body = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL}
    return json.dumps({**body, "choices": [choice], "usage": usage}, separators=(",", ":")).encode()


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n".encode()
    return head + b"content-type: " + content_type + b"\r\n\r\n" + body


_SSE = b"text/event-stream"
_JSON = b"application/json"
_MODELS = _response("200 OK", _JSON, json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())
_HEALTH = _response("200 OK", _JSON, b"{}")
_NOT_FOUND = _response("404 Not Found", _JSON, b'{"error":{"message":"not found","type":"NotFoundError"}}')


class _Http(asyncio.Protocol):
    """One keep-alive connection: requests in order, each answered in one write."""

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = self._buffer[:end]
            length = _content_length(head)
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            assert self._transport is not None
            self._transport.write(_answer(head, body))


def _content_length(head: bytes) -> int:
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else None])


def _answer(head: bytes, body: bytes) -> bytes:
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0]
    if method == b"POST" and path.endswith(b"completions"):
        found = _MAX_TOKENS.search(body)
        count = int(found.group(1)) if found else DEFAULT_TOKENS
        if _NOT_STREAMED.search(body):
            return _response("200 OK", _JSON, whole_body(count))
        return _response("200 OK", _SSE, stream_body(count))
    if path == b"/health":
        return _HEALTH
    if path.endswith(b"/models"):
        return _MODELS
    return _NOT_FOUND


async def _serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, sock=sock)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def serve(*, host: str, port: int, processes: int) -> None:
    """Bind (port 0 picks a free one), print the port, fork ``processes - 1`` more servers on the socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    children = []
    for _ in range(processes - 1):
        if (pid := os.fork()) == 0:
            uvloop.run(_serve(sock))
            os._exit(0)
        children.append(pid)
    try:
        uvloop.run(_serve(sock))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


@dataclass
class Upstream:
    """A running upstream process; ``base_url`` ends in ``/v1``."""

    process: subprocess.Popen[str]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pids(self) -> list[int]:
        """The server processes (the first and its forks), e.g. for a profiler."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        forks = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *forks]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_upstream(*, processes: int = 1, timeout_s: float = 15.0) -> Upstream:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "bench.upstream", "--port", "0", "--processes", str(processes)]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("LISTENING "):
        process.kill()
        raise RuntimeError(f"bench upstream did not start (exit code {process.poll()}, said {line!r})")
    return Upstream(process=process, port=int(line.split()[1]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free one (printed)")
    parser.add_argument("--processes", type=int, default=1, help="server processes sharing the socket")
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port, processes=max(args.processes, 1))


if __name__ == "__main__":
    main()
