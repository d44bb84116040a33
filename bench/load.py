"""Load generation for the capacity benchmarks: closed-loop workers, and a lean HTTP/1.1 client.

The client is hand-rolled because the load generator shares the two cores with the system it measures:
httpx spends about 2 ms of CPU per streamed request (profiled in bench/overhead.py's direct path), which
would cap the measured HTTP front door at the client's speed. This one writes a request in one
``write`` and reads a Content-Length or chunked response off one kept-alive connection per worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """What one concurrency level measured."""

    concurrency: int
    latencies_ms: list[float]
    seconds: float

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


Call = Callable[[int], Awaitable[None]]


async def closed_loop(call: Call, *, concurrency: int, seconds: float, min_requests: int = 0) -> Level:
    """``concurrency`` workers calling back to back for ``seconds`` (and at least ``min_requests`` calls)."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while loop.time() < end or len(latencies) < min_requests:
            i = next(counter)
            began = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - began) * 1e3)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Level(concurrency=concurrency, latencies_ms=latencies, seconds=loop.time() - start)


class HttpConnection:
    """One kept-alive HTTP/1.1 connection; ``post`` returns the status and the whole body."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, object]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        ).encode() + data
        reused = self._writer is not None
        try:
            return await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
        # The server closed the idle kept-alive connection (uvicorn does after 5 s): once more on a new one.
        await self.close()
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(request)
        return await _response(self._reader)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    if (at := lower.find(b"\r\ncontent-length:")) >= 0:
        return status, await reader.readexactly(int(lower[at + 17 : lower.find(b"\r\n", at + 2)]))
    if b"transfer-encoding: chunked" not in lower:
        raise ValueError(f"response without a length: {head!r}")
    parts = []
    while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return status, b"".join(parts)


class HttpPool:
    """A connection per concurrent caller: a free one is reused, else a new one opens."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._free: list[HttpConnection] = []
        self._all: list[HttpConnection] = []

    async def post(self, path: str, body: dict[str, object]) -> tuple[int, bytes]:
        connection = self._free.pop() if self._free else self._open()
        try:
            result = await connection.post(path, body)
        except BaseException:
            await connection.close()
            self._all.remove(connection)
            raise
        self._free.append(connection)
        return result

    def _open(self) -> HttpConnection:
        connection = HttpConnection(self._host, self._port)
        self._all.append(connection)
        return connection

    async def aclose(self) -> None:
        for connection in self._all:
            await connection.close()
        self._all.clear()
        self._free.clear()
