"""Every decoder of outside input, each wrapped as a target: bytes in, the kind of answer out.

A target's ``feed`` returns a short name for how the input was handled ("ok", "INVALID_ARGUMENT", ...);
it raises :class:`Crash` when the handling is itself a failure (an exception escaped the handler, a gRPC
INTERNAL or UNKNOWN, no reply where one is due). The NATS handlers are called in-process with real
``nats.aio.msg.Msg`` objects on a real connection, so their replies travel through the real nats-server;
the gRPC targets send raw bytes to the real gateway.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import cascade_pb2, common_pb2, events_pb2
from services.core import subjects
from services.core.errors import CascadeError, ErrorCode
from services.core.nats import NatsServer, connect_nats
from services.gateway import wire
from services.gateway.clients import decode_accept, decode_chunk, decode_decision
from services.outcomes.reader import decode_event
from services.registry.follow import Follower
from tests.support.data import write_routing_file
from tests.support.system import System, make_settings, replay_tier, run_system

from .inputs import SAMPLES

# Small limits keep oversized inputs cheap; the checks are the same at any size.
MAX_PAYLOAD = 64 << 10
MAX_REQUEST = 32 << 10
PROMPT = "What is the capital of France?"
ANSWER = "Paris."
REPLY_TIMEOUT_S = 5.0


class Crash(Exception):
    """The input was not handled: the decoder or its service failed."""


@dataclass(frozen=True)
class Target:
    name: str
    feed: Callable[[bytes], Awaitable[str]]
    # A well-formed input (a new one each call): fuzzing mutates it, and it must still be answered "ok" after.
    valid: Callable[[], bytes]
    limit: int = MAX_PAYLOAD  # the size limit its service enforces (oversized inputs go just past it)


class Replies:
    """Calls a NATS handler with a real Msg whose reply subject this connection listens on."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc, self._ids = nc, itertools.count()
        self._waiting: dict[str, asyncio.Future[bytes]] = {}

    async def start(self) -> None:
        await self.nc.subscribe("_INBOX.fuzz.replies.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject, None)
        if future is not None and not future.done():
            future.set_result(msg.data)

    async def ask(self, handler: Callable[[Msg], Awaitable[None]], subject: str, data: bytes) -> bytes:
        reply = f"_INBOX.fuzz.replies.{next(self._ids)}"
        future = self._waiting[reply] = asyncio.get_running_loop().create_future()
        try:
            await handler(Msg(_client=self.nc, subject=subject, reply=reply, data=data))
            return await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        except TimeoutError:
            raise Crash("no reply") from None
        finally:
            self._waiting.pop(reply, None)


def _error_kind(message: str) -> str:
    return "over limit" if "over the limit" in message else "malformed" if "malformed" in message else message[:40]


def _code(value: int) -> str:
    try:
        return ErrorCode(value).name
    except ValueError:
        return f"code {value}"


def _pure(call: Callable[[bytes], object]) -> Callable[[bytes], Awaitable[str]]:
    """A decoder that is a plain function: a project error is handled, anything else escapes as a crash."""

    async def feed(data: bytes) -> str:
        try:
            result = call(data)
        except CascadeError as exc:
            return type(exc).__name__
        return "skipped" if result is None else "ok"

    return feed


def _fixed(message: bytes) -> Callable[[], bytes]:
    return lambda: message


def _tier_requests() -> Callable[[], bytes]:
    ids = itertools.count()
    message = common_pb2.ChatMessage(role="user", content=PROMPT)

    def valid() -> bytes:  # a new id each time: the worker refuses an id already in flight
        return events_pb2.TierRequest(
            request_id=f"fuzz-{next(ids)}", messages=[message], max_tokens=16, chunk_subject="_INBOX.fuzz.chunks"
        ).SerializeToString()

    return valid


def nats_targets(system: System, replies: Replies, follower: Follower) -> list[Target]:
    """The NATS decoders: router, tier worker (requests, cancels), gateway clients, outcome reader, follower."""
    router, worker = system.router, system.workers["small"]

    async def route(data: bytes) -> str:
        decision = events_pb2.RouteDecision.FromString(await replies.ask(router.handle_request, subjects.ROUTE, data))
        return _error_kind(decision.error) if decision.error else "ok"

    async def admit(data: bytes) -> str:
        accept = events_pb2.TierAccept.FromString(
            await replies.ask(worker.handle_request, subjects.tier_subject("small"), data)
        )
        return _code(accept.error.code) if accept.HasField("error") and accept.error.code else "ok"

    async def cancel(data: bytes) -> str:
        await worker.handle_cancel(Msg(_client=replies.nc, subject=subjects.CANCEL, data=data))
        return "ok"

    async def model_event(data: bytes) -> str:
        follower.on_event_payload(data)
        return "ok"

    return [
        Target("router RouteRequest", route, _fixed(SAMPLES["RouteRequest"])),
        Target("tier TierRequest", admit, _tier_requests()),
        Target("tier cancel", cancel, _fixed(b"fuzz-1")),
        Target(
            "gateway RouteDecision",
            _pure(lambda d: decode_decision(d, limit=MAX_PAYLOAD)),
            _fixed(SAMPLES["RouteDecision"]),
        ),
        Target(
            "gateway TierAccept",
            _pure(lambda d: decode_accept(d, "small", limit=MAX_PAYLOAD)),
            _fixed(SAMPLES["TierAccept"]),
        ),
        Target(
            "gateway TokenChunk",
            _pure(lambda d: wire.piece(decode_chunk(d, "small", limit=MAX_PAYLOAD))),
            _fixed(SAMPLES["TokenChunk"]),
        ),
        Target(
            "outcome reader OutcomeEvent",
            _pure(lambda d: decode_event(subjects.OUTCOMES, d, limit=MAX_PAYLOAD)),
            _fixed(SAMPLES["OutcomeEvent"]),
        ),
        Target(
            "outcome reader FeedbackEvent",
            _pure(lambda d: decode_event(subjects.FEEDBACK, d, limit=MAX_PAYLOAD)),
            _fixed(SAMPLES["FeedbackEvent"]),
        ),
        Target("follower ModelEvent", model_event, _fixed(SAMPLES["ModelEvent"])),
    ]


def grpc_targets(channel: aio.Channel) -> list[Target]:
    """Raw bytes to the gateway's Generate, GenerateStream and Feedback, past the client's serializers."""

    def method(name: str, *, stream: bool) -> Callable[[bytes], Awaitable[str]]:
        path = f"/cascade.v1.Cascade/{name}"
        call = channel.unary_stream(path) if stream else channel.unary_unary(path)  # no serializers: bytes

        async def feed(data: bytes) -> str:
            try:
                if stream:
                    async for _ in call(data, timeout=30):
                        pass
                else:
                    await call(data, timeout=30)
            except aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    raise Crash(f"{exc.code().name}: {exc.details()}") from None
                return exc.code().name
            return "ok"

        return feed

    generate = cascade_pb2.GenerateRequest(request_id="fuzz-valid", prompt=PROMPT, max_tokens=16).SerializeToString()
    feedback = cascade_pb2.FeedbackRequest(request_id="fuzz-valid", score=1.0).SerializeToString()
    return [
        Target("gateway gRPC Generate", method("Generate", stream=False), _fixed(generate), MAX_REQUEST),
        Target("gateway gRPC GenerateStream", method("GenerateStream", stream=True), _fixed(generate), MAX_REQUEST),
        # Run after Generate: its valid request is one that Generate served.
        Target("gateway gRPC Feedback", method("Feedback", stream=False), _fixed(feedback), MAX_REQUEST),
    ]


@dataclass
class FuzzSystem:
    system: System
    targets: list[Target]


@asynccontextmanager
async def fuzz_system(workdir: Path) -> AsyncIterator[FuzzSystem]:
    """A real nats-server, router, two replay tiers and gateway, and every target on them."""
    data = write_routing_file(
        workdir / "routing.parquet", [("p1", PROMPT, m, 1.0, ANSWER) for m in ("small-model", "large-model")]
    )
    tiers = {"small": replay_tier(data, "small-model"), "large": replay_tier(data, "large-model")}
    async with AsyncExitStack() as stack:
        nats = await stack.enter_async_context(NatsServer(data_dir=workdir / "nats", max_payload_bytes=MAX_PAYLOAD))
        settings = make_settings(
            nats.url,
            tiers,
            nats={"max_payload_bytes": MAX_PAYLOAD},
            gateway={"max_request_bytes": MAX_REQUEST},
            outcomes={"spool_dir": str(workdir / "spool")},
        )
        system = await stack.enter_async_context(run_system(nats, settings))
        nc = await connect_nats(nats.url, name="fuzz")
        stack.push_async_callback(nc.drain)
        replies = Replies(nc)
        await replies.start()
        follower = Follower(
            nc=nc,
            kind="router",
            bucket="fuzz",
            cache_dir=workdir / "cache",
            interval_s=0,
            serving=lambda: "v1",
            swap=lambda model: None,
        )
        channel = await stack.enter_async_context(aio.insecure_channel(system.target))
        yield FuzzSystem(system, nats_targets(system, replies, follower) + grpc_targets(channel))
