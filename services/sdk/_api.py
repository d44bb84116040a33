"""The SDK's calls, written once for both clients.

Each function below is the public signature and docstring of one client method; its body checks the
arguments and builds the :class:`Call` (stub method, wire request, result converter), before any I/O.
:func:`sync_unary` and :func:`sync_stream` make the blocking client's methods of them,
:func:`async_unary` and :func:`async_stream` the asyncio client's: thin wrappers that show the
function's signature and docstring (``help()``, ``inspect.signature``, IDEs and type checkers) and
hand the call to the client's one transport method for that kind (``_unary`` / ``_stream``).
:class:`ClientBase` is what both clients are built from (options, target, closed state).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from google.protobuf.message import Message

from services.core.errors import InternalError
from services.sdk import _convert
from services.sdk._config import ChannelOptions, ClientConfig
from services.sdk._convert import MessageLike
from services.sdk.types import GenerateResult, Policy, StreamChunk, TlsConfig

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One RPC, ready to send: ``method`` names the stub's method, ``result`` converts its response."""

    method: str
    request: Message
    timeout: float | None
    metadata: Mapping[str, str] | None
    result: Callable[[Any], R]


class ClientBase:
    """The options, target and closed state both clients share; ``_open`` prepares the channel."""

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
        """Check the options and prepare the channel to the gateway (nothing is dialled until the first call).

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
        self._closed = False
        self._open()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, attr in vars(cls).items():  # the methods made of a call spec: named for the class
            if inspect.isfunction(attr) and hasattr(attr, "__wrapped__"):
                attr.__qualname__, attr.__module__ = f"{cls.__qualname__}.{name}", cls.__module__

    def _open(self) -> None:
        raise NotImplementedError

    @property
    def target(self) -> str:
        """The "host:port" this client talks to."""
        return self._config.target

    def _check_open(self) -> None:
        if self._closed:
            raise InternalError(f"the client of {self.target} is closed")

    def _call_args(self, call: Call[Any]) -> dict[str, Any]:
        return self._config.call_args(call.timeout, call.metadata)


def generate(
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
) -> Call[GenerateResult]:
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
    return Call("Generate", request, timeout, metadata, _convert.result_from_wire)


def stream(
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
) -> Call[StreamChunk]:
    """Answer one request as an iterator of :class:`StreamChunk` (the asyncio client: an async iterator,
    ``async for chunk in client.stream(...)``; not a coroutine), the last one ``final``.

    With ``speculative=True`` a small answer that may still escalate streams live; if it then escalates, a
    chunk with ``retract`` set withdraws the text received so far and the large tier's answer follows.
    Without it (held), such an answer arrives only once its confidence is known, and text once received is
    never withdrawn. Arguments as for :meth:`generate`; they are checked here, before any call. The call
    starts on the first iteration; the timeout covers the whole stream. Errors (also mid-stream) are raised
    from the iteration. Closing the iterator early (``close()`` or ``contextlib.closing``; asyncio:
    ``aclose()`` or ``contextlib.aclosing``) cancels the call. Use :func:`collect` (asyncio:
    :func:`acollect`) to join the chunks into a :class:`GenerateResult`.
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
    return Call("GenerateStream", request, timeout, metadata, _convert.chunk_from_wire)


def feedback(
    request_id: str,
    score: float,
    *,
    comment: str = "",
    tenant: str = "",
    timeout: float | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Call[bool]:
    """Attach a quality score in [0, 1] (1: fully correct) to an earlier request.

    Returns:
        False when the same feedback for this request was already recorded (deduplicated).

    Raises:
        NotFound: the server does not know the request id; other errors as for :meth:`generate`.
    """
    request = _convert.feedback_request(request_id, score, comment=comment, tenant=tenant)
    return Call("Feedback", request, timeout, metadata, lambda response: bool(response.accepted))


def _method(spec: Callable[..., Any], wrapper: Callable[..., Any], returns: Any) -> None:
    """Give ``wrapper`` the name, docstring and signature (self first, ``returns``) of ``spec``."""
    functools.update_wrapper(wrapper, spec, assigned=("__module__", "__name__", "__doc__"), updated=())
    sig = inspect.signature(spec)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[self, *sig.parameters.values()], return_annotation=returns
    )


def sync_unary(spec: Callable[P, Call[R]]) -> Callable[Concatenate[Any, P], R]:
    """The blocking client's method for a unary call: ``self._unary(call)`` returns the result."""

    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._unary(spec(*args, **kwargs))  # type: ignore[no-any-return]

    _method(spec, method, _returns(spec))
    return method


def sync_stream(spec: Callable[P, Call[R]]) -> Callable[Concatenate[Any, P], Generator[R, None, None]]:
    """The blocking client's method for a server stream: the arguments are checked at once, the call
    runs as the returned generator is iterated (``self._stream(call)``)."""

    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> Generator[R, None, None]:
        return self._stream(spec(*args, **kwargs))  # type: ignore[no-any-return]

    _method(spec, method, f"Generator[{_returns(spec)}, None, None]")
    return method


def async_unary(spec: Callable[P, Call[R]]) -> Callable[Concatenate[Any, P], Awaitable[R]]:
    """The asyncio client's coroutine method for a unary call (``await self._unary(call)``)."""

    async def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._unary(spec(*args, **kwargs))  # type: ignore[no-any-return]

    _method(spec, method, _returns(spec))
    return method


def async_stream(spec: Callable[P, Call[R]]) -> Callable[Concatenate[Any, P], AsyncGenerator[R, None]]:
    """The asyncio client's method for a server stream: not a coroutine; returns the async generator."""

    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[R, None]:
        return self._stream(spec(*args, **kwargs))  # type: ignore[no-any-return]

    _method(spec, method, f"AsyncGenerator[{_returns(spec)}, None]")
    return method


def _returns(spec: Callable[..., Any]) -> str:
    """``Call[X]`` -> ``"X"``: what the client's method returns (annotations are strings here)."""
    annotation = str(inspect.signature(spec).return_annotation)
    return annotation.removeprefix("Call[").removesuffix("]")
