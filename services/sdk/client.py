"""The blocking client, for scripts, notebooks and threaded services."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from types import TracebackType

import grpc

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.errors import InternalError, Unavailable
from services.sdk import _convert
from services.sdk._config import ChannelOptions, ClientConfig
from services.sdk._convert import MessageLike
from services.sdk._errors import from_rpc_error
from services.sdk.types import GenerateResult, Policy, StreamChunk, TlsConfig


class CascadeClient:
    """Blocking client of the Cascade gRPC API.

    Example::

        with CascadeClient(target="cascade:50051", timeout=30) as client:
            result = client.generate("What is 2 + 2?", policy="cascade")
            print(result.text, result.route.tier)

    A client holds one channel; it is thread-safe and meant to be shared and reused.
    Every method raises a subclass of ``services.core.errors.CascadeError`` (and of
    :class:`RemoteError` when the server or transport failed), never ``grpc.RpcError``.
    """

    def __init__(
        self,
        *,
        target: str,
        tls: bool | TlsConfig = False,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        options: ChannelOptions = (),
        token: str | None = None,
    ) -> None:
        """Open a channel to the gateway (connection is lazy: nothing is dialled until the first call).

        Args:
            target: "host:port" of the Cascade gateway.
            tls: False for plaintext, True for TLS with the system roots, or a
                :class:`TlsConfig` for custom roots, mutual TLS or a name override.
            timeout: Default deadline of each call in seconds; None means no deadline.
            metadata: Sent with every call (e.g. ``{"authorization": "Bearer ..."}``).
            options: gRPC channel arguments, passed through unchanged
                (e.g. ``[("grpc.max_receive_message_length", n)]``).
            token: Bearer token sent with every call (``authorization: Bearer TOKEN``), for a
                gateway with ``gateway.tenants``; it decides the tenant of every request.

        Raises:
            ConfigError: an option is invalid or a TLS file cannot be read.
        """
        self._config = ClientConfig.create(
            target=target, tls=tls, timeout=timeout, metadata=metadata, options=options, token=token
        )
        if self._config.credentials is None:
            self._channel = grpc.insecure_channel(target, options=self._config.options)
        else:
            self._channel = grpc.secure_channel(target, self._config.credentials, options=self._config.options)
        self._stub = cascade_pb2_grpc.CascadeStub(self._channel)
        self._closed = False

    @property
    def target(self) -> str:
        """The "host:port" this client talks to."""
        return self._config.target

    def _live_stub(self) -> cascade_pb2_grpc.CascadeStub:
        if self._closed:
            raise InternalError(f"the client of {self.target} is closed")
        return self._stub

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] | None = None,
        max_tokens: int = 0,
        temperature: float | None = None,
        stop: str | Sequence[str] = (),
        policy: Policy | str | None = None,
        tenant: str = "",
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> GenerateResult:
        """Answer one request and return the whole answer.

        Args:
            prompt: The prompt text; give either this or ``messages``.
            messages: A chat, as :class:`ChatMessage` objects or ``{"role", "content"}`` dicts.
            max_tokens: Upper bound on generated tokens; 0 means the gateway's default.
            temperature: Sampling temperature in [0, 2]; None leaves the tier's default.
            stop: Stop sequences (one string or several).
            policy: "cascade" (route, then escalate a low-confidence small answer; "auto" is
                an alias), "route" (route, never escalate), "small" or "large"; None: the
                gateway's default policy (``gateway.default_policy``, "cascade" unless configured).
            tenant: Who the request is for (accounting).
            tags: Free-form labels recorded with the outcome.
            request_id: Caller-chosen id for idempotent retries; the gateway makes one if empty.
            timeout: Deadline of this call in seconds; None uses the client's default.
            metadata: Extra metadata for this call, overriding the client's per key.

        Raises:
            InvalidRequest: the arguments are invalid (checked before any call) or the
                server rejected them.
            Overloaded, Unavailable, DeadlineExceeded, Cancelled, NotFound, Unauthenticated,
            PermissionDenied, InternalError:
                the call failed with the matching gRPC status.
        """
        request = _convert.generate_request(
            prompt,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            policy=policy,
            tenant=tenant,
            tags=tags,
            request_id=request_id,
        )
        try:
            response = self._live_stub().Generate(request, **self._config.call_args(timeout, metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return _convert.result_from_wire(response)

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] | None = None,
        max_tokens: int = 0,
        temperature: float | None = None,
        stop: str | Sequence[str] = (),
        policy: Policy | str | None = None,
        tenant: str = "",
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        speculative: bool = False,
    ) -> Generator[StreamChunk, None, None]:
        """Answer one request as an iterator of :class:`StreamChunk`, the last one ``final``.

        With ``speculative=True`` a small answer that may still escalate streams live; if it then escalates, a
        chunk with ``retract`` set withdraws the text received so far and the large tier's answer follows.
        Without it (held), such an answer arrives only once its confidence is known, and text once received is
        never withdrawn. Arguments as for :meth:`generate`; they are checked here, before any call. The call
        starts on the first ``next()``; the timeout covers the whole stream. Errors (also mid-stream) are raised
        from the iteration. Closing the iterator early (``close()``, or leaving a ``contextlib.closing`` block)
        cancels the call. Use :func:`collect` to join the chunks into a :class:`GenerateResult`.
        """
        request = _convert.generate_request(
            prompt,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            policy=policy,
            tenant=tenant,
            tags=tags,
            request_id=request_id,
            speculative=speculative,
        )
        return self._iterate(request, self._config.call_args(timeout, metadata))

    def _iterate(
        self, request: cascade_pb2.GenerateRequest, call_args: dict[str, object]
    ) -> Generator[StreamChunk, None, None]:
        call = self._live_stub().GenerateStream(request, **call_args)
        try:
            for chunk in call:
                yield _convert.chunk_from_wire(chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()  # a no-op once the call has finished

    def feedback(
        self,
        request_id: str,
        score: float,
        *,
        comment: str = "",
        tenant: str = "",
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Attach a quality score in [0, 1] (1: fully correct) to an earlier request.

        Returns:
            False when the same feedback for this request was already recorded (deduplicated).

        Raises:
            NotFound: the server does not know the request id; other errors as for :meth:`generate`.
        """
        request = _convert.feedback_request(request_id, score, comment=comment, tenant=tenant)
        try:
            response = self._live_stub().Feedback(request, **self._config.call_args(timeout, metadata))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return bool(response.accepted)

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
