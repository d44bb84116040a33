"""The SDK against a real grpc.aio server on a free port.

The test servicer derives every answer from what it received (text = reversed
prompt, tier from the policy, confidence from the temperature, ...) and records
requests, metadata and deadlines, so each test checks both directions of the wire.
Prompts steer it: "abort:NAME" aborts with that status, "sleep:S" sleeps S seconds,
"midstream:NAME" aborts a stream after one chunk, "crash" raises.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2
from services.sdk import (
    AsyncCascadeClient,
    Cancelled,
    CascadeClient,
    ChatMessage,
    DeadlineExceeded,
    GenerateResult,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    Policy,
    RemoteError,
    Route,
    StreamChunk,
    Timings,
    TlsConfig,
    Unauthenticated,
    Unavailable,
    Usage,
    acollect,
    collect,
)

# ---------------------------------------------------------------------------- the test server

TIMINGS = common_pb2.StageTimings(route_ms=1.5, first_token_ms=2.5, small_ms=3.5, large_ms=0.0, total_ms=9.0)


def _source(request: Any) -> str:
    if request.prompt:
        return str(request.prompt)
    return "|".join(f"{m.role}:{m.content}" for m in request.messages)


def _summary(request: Any, text: str) -> dict[str, Any]:
    """The summary fields of an answer, all derived from the request."""
    tier = "large" if request.policy == cascade_pb2.POLICY_LARGE else "small"
    escalate = request.tags.get("escalate") == "yes"
    route = common_pb2.RouteSummary(
        tier="large" if escalate else tier,
        tiers_tried=["small", "large"] if escalate else [tier],
        escalated=escalate,
        router_score=0.25,
        router_threshold=0.5,
        router_model_version="test-1",
        policy=cascade_pb2.Policy.Name(request.policy).removeprefix("POLICY_").lower(),
    )
    if request.HasField("temperature"):
        route.confidence = request.temperature / 2
    truncated = bool(request.max_tokens) and len(_source(request)) > request.max_tokens
    return {
        "request_id": request.request_id or "generated-id",
        "finish_reason": common_pb2.FINISH_REASON_LENGTH if truncated else common_pb2.FINISH_REASON_STOP,
        "route": route,
        "usage": common_pb2.Usage(input_tokens=len(_source(request)), output_tokens=len(text), estimated=True),
        "cost_usd": 0.001 * len(text),
        "timings": TIMINGS,
    }


def _answer(request: Any) -> str:
    text = _source(request)[::-1]
    return text[: request.max_tokens] if request.max_tokens else text


@dataclass
class RecordingServicer(cascade_pb2_grpc.CascadeServicer):
    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    feedback_seen: set[tuple[str, float]] = field(default_factory=set)
    stream_cancelled: asyncio.Event | None = None

    def _record(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        self.deadlines.append(context.time_remaining())

    @staticmethod
    async def _act(prompt: str, context: grpc.aio.ServicerContext) -> None:
        if prompt.startswith("abort:"):
            name = prompt.removeprefix("abort:")
            await context.abort(grpc.StatusCode[name], f"server says {name}")
        if prompt.startswith("sleep:"):
            await asyncio.sleep(float(prompt.removeprefix("sleep:")))
        if prompt == "crash":
            raise RuntimeError("boom")

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record(request, context)
        await self._act(request.prompt, context)
        text = _answer(request)
        return cascade_pb2.GenerateResponse(text=text, **_summary(request, text))

    async def GenerateStream(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self._record(request, context)
        await self._act(request.prompt, context)
        text = _answer(request)
        request_id = request.request_id or "generated-id"
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)] or [""]
        for piece in pieces[:-1]:
            yield cascade_pb2.GenerateChunk(request_id=request_id, text=piece, tier="small")
            if request.prompt.startswith("midstream:"):
                name = request.prompt.removeprefix("midstream:")
                await context.abort(grpc.StatusCode[name], f"server says {name}")
            if request.prompt == "slow-stream":
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    if self.stream_cancelled is not None:
                        self.stream_cancelled.set()
                    raise
        yield cascade_pb2.GenerateChunk(text=pieces[-1], tier="small", final=True, **_summary(request, text))

    async def Feedback(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._record(request, context)
        if request.request_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such request")
        key = (request.request_id, request.score)
        accepted = key not in self.feedback_seen
        self.feedback_seen.add(key)
        return cascade_pb2.FeedbackResponse(accepted=accepted)


@dataclass
class Served:
    servicer: RecordingServicer
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _start(
    servicer: RecordingServicer, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    cascade_pb2_grpc.add_CascadeServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    servicer = RecordingServicer(stream_cancelled=asyncio.Event())
    server, port = await _start(servicer)
    yield Served(servicer, port)
    await server.stop(grace=None)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[AsyncCascadeClient]:
    async with AsyncCascadeClient(
        target=served.target, timeout=5, metadata={"authorization": "Bearer token", "x-team": "a"}
    ) as client:
        yield client


@pytest.fixture
def threaded() -> Iterator[Served]:
    """The same grpc.aio server, on its own event loop in a thread, for the blocking client."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servicer = RecordingServicer()
    server, port = asyncio.run_coroutine_threadsafe(_start(servicer), loop).result(10)
    try:
        yield Served(servicer, port)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(grace=None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sync_client(threaded: Served) -> Iterator[CascadeClient]:
    with CascadeClient(target=threaded.target, timeout=5, metadata={"authorization": "Bearer token"}) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------- what is sent


async def test_generate_sends_what_the_caller_passed(client: AsyncCascadeClient, served: Served) -> None:
    await client.generate(
        "hello world",
        max_tokens=64,
        temperature=0.0,
        stop=["\n\n", "END"],
        policy="large",
        tenant="team-a",
        tags={"job": "nightly"},
        request_id="req-1",
    )
    (sent,) = served.servicer.requests
    assert sent.prompt == "hello world"
    assert not sent.messages
    assert sent.max_tokens == 64
    assert sent.HasField("temperature") and sent.temperature == 0.0  # zero is sent, not dropped
    assert list(sent.stop) == ["\n\n", "END"]
    assert sent.policy == cascade_pb2.POLICY_LARGE
    assert sent.tenant == "team-a"
    assert dict(sent.tags) == {"job": "nightly"}
    assert sent.request_id == "req-1"


async def test_defaults_leave_temperature_and_policy_unset(client: AsyncCascadeClient, served: Served) -> None:
    await client.generate("hi")
    (sent,) = served.servicer.requests
    assert not sent.HasField("temperature")
    assert sent.policy == cascade_pb2.POLICY_UNSPECIFIED  # the gateway's default policy applies
    assert (sent.max_tokens, list(sent.stop), dict(sent.tags), sent.request_id) == (0, [], {}, "")


async def test_messages_accept_dataclasses_and_dicts(client: AsyncCascadeClient, served: Served) -> None:
    result = await client.generate(
        messages=[ChatMessage.system("be brief"), {"role": "user", "content": "2+2?"}],
        stop="\n",
        policy=Policy.SMALL,
    )
    (sent,) = served.servicer.requests
    assert [(m.role, m.content) for m in sent.messages] == [("system", "be brief"), ("user", "2+2?")]
    assert sent.prompt == ""
    assert list(sent.stop) == ["\n"]
    assert result.text == "system:be brief|user:2+2?"[::-1]
    assert result.route.policy == "small"


async def test_metadata_and_deadline_are_sent(client: AsyncCascadeClient, served: Served) -> None:
    await client.generate("a")
    await client.generate("b", timeout=0.5, metadata={"X-Team": "b", "x-trace": "t1"})
    first, second = served.servicer.metadata
    assert first["authorization"] == "Bearer token" and first["x-team"] == "a"
    assert second["authorization"] == "Bearer token"
    assert second["x-team"] == "b" and second["x-trace"] == "t1"
    default_deadline, call_deadline = served.servicer.deadlines
    assert default_deadline is not None and 3 < default_deadline <= 5.1  # gRPC rounds deadlines up a little
    assert call_deadline is not None and 0 < call_deadline <= 0.6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": "x", "policy": "medium"},
        {"prompt": "x", "policy": 7},
        {"prompt": "x", "messages": [ChatMessage.user("y")]},
        {"prompt": None},
        {"messages": [{"role": "user"}]},
        {"prompt": "x", "max_tokens": -1},
        {"prompt": "x", "timeout": 0},
    ],
)
async def test_invalid_arguments_fail_locally(
    client: AsyncCascadeClient, served: Served, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await client.generate(**kwargs)
    assert not isinstance(info.value, RemoteError)
    with pytest.raises(InvalidRequest):
        client.stream(**kwargs)  # checked when the stream is created, before iterating
    assert served.servicer.requests == []


# ---------------------------------------------------------------------------- what comes back


async def test_generate_converts_the_response(client: AsyncCascadeClient) -> None:
    result = await client.generate("abcdef", temperature=1.0, tags={"escalate": "yes"}, policy="cascade")
    assert isinstance(result, GenerateResult)
    assert result.cost_usd == pytest.approx(0.006)
    assert result == GenerateResult(
        request_id="generated-id",
        text="fedcba",
        finish_reason="stop",
        route=Route(
            tier="large",
            tiers_tried=("small", "large"),
            escalated=True,
            router_score=0.25,
            router_threshold=0.5,
            router_model_version="test-1",
            confidence=0.5,
            policy="cascade",
        ),
        usage=Usage(input_tokens=6, output_tokens=6, estimated=True),
        cost_usd=result.cost_usd,
        timings=Timings(route_ms=1.5, first_token_ms=2.5, small_ms=3.5, large_ms=0.0, total_ms=9.0),
    )


async def test_absent_confidence_is_none_and_length_finish(client: AsyncCascadeClient) -> None:
    result = await client.generate("abcdef", max_tokens=2)
    assert result.route.confidence is None
    assert result.finish_reason == "length"
    assert result.text == "fe"


async def test_stream_yields_chunks_in_order(client: AsyncCascadeClient, served: Served) -> None:
    prompt = "the quick brown fox"
    chunks = [chunk async for chunk in client.stream(prompt, policy="small", request_id="s-1")]
    assert all(isinstance(c, StreamChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == prompt[::-1]
    assert [c.text for c in chunks[:2]] == ["xof", " nw"]
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    for chunk in chunks[:-1]:
        assert (chunk.finish_reason, chunk.route, chunk.usage, chunk.cost_usd, chunk.timings) == (None,) * 5
        assert chunk.request_id == "s-1" and chunk.tier == "small"
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.route is not None and final.route.tier == "small"
    assert final.usage == Usage(input_tokens=len(prompt), output_tokens=len(prompt), estimated=True)
    assert final.timings is not None and final.timings.total_ms == 9.0
    assert served.servicer.metadata[0]["authorization"] == "Bearer token"
    assert served.servicer.deadlines[0] is not None


async def test_acollect_matches_generate(client: AsyncCascadeClient) -> None:
    streamed = await acollect(client.stream("stream me please", temperature=0.5, request_id="r"))
    whole = await client.generate("stream me please", temperature=0.5, request_id="r")
    assert streamed == whole


async def test_closing_a_stream_early_cancels_the_call(client: AsyncCascadeClient, served: Served) -> None:
    async with aclosing(client.stream("slow-stream")) as stream:
        first = await anext(stream)
    assert first.text == "mae"
    assert served.servicer.stream_cancelled is not None
    await asyncio.wait_for(served.servicer.stream_cancelled.wait(), 5)


async def test_feedback(client: AsyncCascadeClient, served: Served) -> None:
    assert await client.feedback("req-1", 0.9, comment="good", tenant="team-a") is True
    assert await client.feedback("req-1", 0.9) is False
    sent = served.servicer.requests[0]
    assert (sent.request_id, sent.score, sent.comment, sent.tenant) == ("req-1", 0.9, "good", "team-a")
    with pytest.raises(NotFound, match="no such request"):
        await client.feedback("missing", 0.1)


# ---------------------------------------------------------------------------- errors

STATUS_TO_ERROR = [
    ("INVALID_ARGUMENT", InvalidRequest),
    ("NOT_FOUND", NotFound),
    ("RESOURCE_EXHAUSTED", Overloaded),
    ("UNAVAILABLE", Unavailable),
    ("DEADLINE_EXCEEDED", DeadlineExceeded),
    ("CANCELLED", Cancelled),
    ("INTERNAL", InternalError),
    ("UNKNOWN", InternalError),
    ("UNIMPLEMENTED", InternalError),
    ("PERMISSION_DENIED", PermissionDenied),
    ("UNAUTHENTICATED", Unauthenticated),
    ("FAILED_PRECONDITION", InternalError),
]


def _check_error(error: BaseException, name: str, expected: type[Exception]) -> None:
    assert isinstance(error, expected) and isinstance(error, RemoteError)
    assert error.grpc_code is grpc.StatusCode[name]
    assert error.message == f"server says {name}"
    assert isinstance(error.__cause__, grpc.RpcError)


@pytest.mark.parametrize(("name", "expected"), STATUS_TO_ERROR)
async def test_status_codes_map_to_project_errors(
    client: AsyncCascadeClient, name: str, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as info:
        await client.generate(f"abort:{name}")
    _check_error(info.value, name, expected)


@pytest.mark.parametrize(("name", "expected"), STATUS_TO_ERROR)
async def test_stream_errors_are_mapped_at_start_and_mid_stream(
    client: AsyncCascadeClient, name: str, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as info:
        await acollect(client.stream(f"abort:{name}"))
    _check_error(info.value, name, expected)

    received: list[StreamChunk] = []
    with pytest.raises(expected) as info:
        async for chunk in client.stream(f"midstream:{name}"):
            received.append(chunk)
    _check_error(info.value, name, expected)
    assert len(received) == 1


async def test_an_unexpected_server_exception_is_internal(client: AsyncCascadeClient) -> None:
    with pytest.raises(InternalError) as info:
        await client.generate("crash")
    assert isinstance(info.value, RemoteError) and info.value.grpc_code is grpc.StatusCode.UNKNOWN


async def test_timeout_raises_deadline_exceeded(served: Served) -> None:
    async with AsyncCascadeClient(target=served.target, timeout=0.2) as client:
        with pytest.raises(DeadlineExceeded) as info:
            await client.generate("sleep:3")
        assert isinstance(info.value, RemoteError)
        assert info.value.grpc_code is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(DeadlineExceeded):  # the per-call timeout overrides the default
            await client.generate("sleep:0.5", timeout=0.1)
        assert (await client.generate("sleep:0.3", timeout=5)).text == "3.0:peels"
        with pytest.raises(DeadlineExceeded):
            await acollect(client.stream("slow-stream"))


async def test_no_server_is_unavailable() -> None:
    async with AsyncCascadeClient(target=f"127.0.0.1:{_free_port()}", timeout=5) as client:
        with pytest.raises(Unavailable) as info:
            await client.generate("hi")
        assert isinstance(info.value, RemoteError)
        with pytest.raises(Unavailable):
            await client.wait_ready(timeout=0.2)


async def test_a_closed_client_refuses_calls(served: Served) -> None:
    client = AsyncCascadeClient(target=served.target)
    await client.wait_ready(timeout=5)
    await client.generate("no deadline")
    assert served.servicer.deadlines == [None]  # no default timeout: the call has no deadline
    await client.close()
    await client.close()
    with pytest.raises(InternalError, match="closed"):
        await client.generate("hi")


# ---------------------------------------------------------------------------- the blocking client


def test_sync_generate_and_metadata(sync_client: CascadeClient, threaded: Served) -> None:
    result = sync_client.generate("hello", temperature=0.4, policy="LARGE", metadata={"x-call": "1"}, tags={"k": "v"})
    assert result.text == "olleh"
    assert result.route.tier == "large" and result.route.policy == "large"
    assert result.route.confidence == pytest.approx(0.2)
    (sent,) = threaded.servicer.requests
    assert sent.HasField("temperature") and dict(sent.tags) == {"k": "v"}
    assert threaded.servicer.metadata[0]["authorization"] == "Bearer token"
    assert threaded.servicer.metadata[0]["x-call"] == "1"
    deadline = threaded.servicer.deadlines[0]
    assert deadline is not None and 0 < deadline <= 5.1


def test_sync_stream_and_collect(sync_client: CascadeClient) -> None:
    chunks = list(sync_client.stream("abcdefgh"))
    assert [c.text for c in chunks] == ["hgf", "edc", "ba"]
    assert [c.final for c in chunks] == [False, False, True]
    assert collect(sync_client.stream("abcdefgh")) == sync_client.generate("abcdefgh")


@pytest.mark.parametrize(("name", "expected"), STATUS_TO_ERROR)
def test_sync_status_codes_map_to_project_errors(
    sync_client: CascadeClient, name: str, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as info:
        sync_client.generate(f"abort:{name}")
    _check_error(info.value, name, expected)
    with pytest.raises(expected) as info:
        list(sync_client.stream(f"midstream:{name}"))
    _check_error(info.value, name, expected)


def test_sync_timeout_feedback_and_local_validation(sync_client: CascadeClient, threaded: Served) -> None:
    with pytest.raises(DeadlineExceeded):
        sync_client.generate("sleep:3", timeout=0.2)
    with pytest.raises(DeadlineExceeded):
        list(sync_client.stream("slow-stream", timeout=0.2))
    assert sync_client.feedback("r", 1.0) is True
    assert sync_client.feedback("r", 1.0) is False
    with pytest.raises(NotFound):
        sync_client.feedback("missing", 0.0)
    count = len(threaded.servicer.requests)
    with pytest.raises(InvalidRequest):
        sync_client.generate("x", policy="tiny")
    assert len(threaded.servicer.requests) == count


def test_sync_wait_ready_and_close(threaded: Served) -> None:
    client = CascadeClient(target=threaded.target)
    client.wait_ready(timeout=5)
    client.close()
    client.close()
    with pytest.raises(InternalError, match="closed"):
        client.generate("hi")
    with CascadeClient(target=f"127.0.0.1:{_free_port()}") as down:
        with pytest.raises(Unavailable):
            down.wait_ready(timeout=0.2)
        with pytest.raises(Unavailable):
            down.generate("hi", timeout=5)


# ---------------------------------------------------------------------------- TLS


async def test_tls_and_mutual_tls(self_signed: tuple[Path, Path]) -> None:
    key, cert = self_signed
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())], root_certificates=cert.read_bytes(), require_client_auth=True
    )
    server, port = await _start(RecordingServicer(), credentials)
    try:
        mutual = TlsConfig(root_certificates=cert, private_key=key, certificate_chain=str(cert))
        async with AsyncCascadeClient(target=f"localhost:{port}", tls=mutual, timeout=5) as client:
            assert (await client.generate("secure")).text == "eruces"
        inline = TlsConfig(
            root_certificates=cert.read_bytes(),
            private_key=key.read_bytes(),
            certificate_chain=cert.read_bytes(),
            server_name="localhost",
        )
        with CascadeClient(target=f"127.0.0.1:{port}", tls=inline, timeout=5) as sync_client:
            # in a thread: the server runs on this test's event loop
            assert (await asyncio.to_thread(sync_client.generate, "secure")).text == "eruces"
        no_client_cert = TlsConfig(root_certificates=cert)
        async with AsyncCascadeClient(target=f"localhost:{port}", tls=no_client_cert, timeout=5) as client:
            with pytest.raises(Unavailable):
                await client.generate("secure")
        async with AsyncCascadeClient(target=f"localhost:{port}", timeout=5) as plaintext:
            with pytest.raises(Unavailable):
                await plaintext.generate("secure")
    finally:
        await server.stop(grace=None)
