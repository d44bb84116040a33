"""The asyncio client (grpc.aio), for async services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from cascade.v1 import cascade_pb2_grpc
from services.core.errors import Unavailable
from services.sdk import _api
from services.sdk._errors import from_rpc_error

R = TypeVar("R")


class AsyncCascadeClient(_api.ClientBase):
    """Asyncio client of the Cascade gRPC API.

    Example::

        async with AsyncCascadeClient(target="cascade:50051", timeout=30) as client:
            result = await client.generate("What is 2 + 2?")
            async for chunk in client.stream("Tell me a story", policy="large"):
                print(chunk.text, end="")

    The channel is opened on first use, inside the running event loop, and belongs
    to that loop. Share one client per loop. Every method raises a subclass of
    ``services.core.errors.CascadeError`` (and of :class:`RemoteError` when the
    server or transport failed), never ``grpc.RpcError``; task cancellation stays
    ``asyncio.CancelledError``.
    """

    generate = _api.async_unary(_api.generate)
    stream = _api.async_stream(_api.stream)
    feedback = _api.async_unary(_api.feedback)

    def _open(self) -> None:
        self._channel: grpc.aio.Channel | None = None  # opened in _connect, inside the running loop
        self._stub: cascade_pb2_grpc.CascadeStub | None = None

    def _connect(self) -> cascade_pb2_grpc.CascadeStub:
        self._check_open()
        if self._stub is None:
            config = self._config
            if config.credentials is None:
                self._channel = grpc.aio.insecure_channel(config.target, options=config.options)
            else:
                self._channel = grpc.aio.secure_channel(config.target, config.credentials, options=config.options)
            self._stub = cascade_pb2_grpc.CascadeStub(self._channel)
        return self._stub

    async def _unary(self, call: _api.Call[R]) -> R:
        call_args = self._call_args(call)
        try:
            response = await getattr(self._connect(), call.method)(call.request, **call_args)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return call.result(response)

    def _stream(self, call: _api.Call[R]) -> AsyncGenerator[R, None]:
        return self._iterate(call, self._call_args(call))  # the options are checked now, the call starts later

    async def _iterate(self, call: _api.Call[R], call_args: dict[str, Any]) -> AsyncGenerator[R, None]:
        rpc = getattr(self._connect(), call.method)(call.request, **call_args)
        try:
            async for message in rpc:
                yield call.result(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            rpc.cancel()  # a no-op once the call has finished

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the channel is connected (e.g. at service start-up).

        Raises:
            Unavailable: not connected within ``timeout`` seconds.
        """
        self._connect()
        assert self._channel is not None
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise Unavailable(f"{self.target} not ready within {timeout} s") from None

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls in flight get ``grace`` seconds, then are cancelled.

        Safe to call more than once; the client may not be used afterwards.
        """
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace)

    async def __aenter__(self) -> AsyncCascadeClient:
        self._connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
