"""The blocking client, for scripts, notebooks and threaded services."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, TypeVar

import grpc

from cascade.v1 import cascade_pb2_grpc
from services.core.errors import Unavailable
from services.sdk import _api
from services.sdk._errors import from_rpc_error

R = TypeVar("R")


class CascadeClient(_api.ClientBase):
    """Blocking client of the Cascade gRPC API.

    Example::

        with CascadeClient(target="cascade:50051", timeout=30) as client:
            result = client.generate("What is 2 + 2?", policy="cascade")
            print(result.text, result.route.tier)

    A client holds one channel; it is thread-safe and meant to be shared and reused.
    Every method raises a subclass of ``services.core.errors.CascadeError`` (and of
    :class:`RemoteError` when the server or transport failed), never ``grpc.RpcError``.
    """

    generate = _api.sync_unary(_api.generate)
    stream = _api.sync_stream(_api.stream)
    feedback = _api.sync_unary(_api.feedback)

    def _open(self) -> None:
        config = self._config
        if config.credentials is None:
            self._channel = grpc.insecure_channel(config.target, options=config.options)
        else:
            self._channel = grpc.secure_channel(config.target, config.credentials, options=config.options)
        self._stub = cascade_pb2_grpc.CascadeStub(self._channel)

    def _live_stub(self) -> cascade_pb2_grpc.CascadeStub:
        self._check_open()
        return self._stub

    def _unary(self, call: _api.Call[R]) -> R:
        try:
            response = getattr(self._live_stub(), call.method)(call.request, **self._call_args(call))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return call.result(response)

    def _stream(self, call: _api.Call[R]) -> Generator[R, None, None]:
        return self._iterate(call, self._call_args(call))  # the options are checked now, the call starts later

    def _iterate(self, call: _api.Call[R], call_args: dict[str, Any]) -> Generator[R, None, None]:
        rpc = getattr(self._live_stub(), call.method)(call.request, **call_args)
        try:
            for message in rpc:
                yield call.result(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            rpc.cancel()  # a no-op once the call has finished

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the channel is connected (e.g. at service start-up).

        Raises:
            Unavailable: not connected within ``timeout`` seconds.
        """
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(f"{self.target} not ready within {timeout} s") from None

    def close(self) -> None:
        """Close the channel, cancelling calls in flight. Safe to call more than once."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> CascadeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
