"""The gateway's NATS clients for the router and the tier workers: plain values in and out, protobuf inside."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError, NatsUnavailable, Overloaded, TierUnavailable, Unavailable, error_for_code
from services.core.nats import nats_down
from services.core.payloads import DEFAULT_MAX_PAYLOAD, decode
from services.core.telemetry import inject_headers
from services.gateway import wire
from services.gateway.domain import Decision, Piece, TierCall

log = logging.getLogger(__name__)
# Waits before asking a tier again after NATS found no worker for it (0.35 s in all).
ADMISSION_RETRIES_S = (0.05, 0.1, 0.2)


def decode_decision(data: bytes, *, limit: int = DEFAULT_MAX_PAYLOAD) -> Decision:
    """The router's reply; Unavailable (the router misbehaves) when it cannot be read."""
    try:
        return wire.decision(decode(events_pb2.RouteDecision, data, limit=limit))
    except CascadeError as exc:
        raise Unavailable(f"the router's reply was refused: {exc.message}") from None


def decode_accept(data: bytes, tier: str, *, limit: int = DEFAULT_MAX_PAYLOAD) -> events_pb2.TierAccept:
    """A tier's TierAccept; its error, or TierUnavailable when it cannot be read, raised."""
    try:
        accept = decode(events_pb2.TierAccept, data, limit=limit)
    except CascadeError as exc:
        raise TierUnavailable(f"tier {tier!r} sent an unreadable TierAccept: {exc.message}") from None
    if accept.HasField("error") and accept.error.code:
        raise error_for_code(accept.error.code, accept.error.message)
    return accept


def decode_chunk(data: bytes, tier: str, *, limit: int = DEFAULT_MAX_PAYLOAD) -> events_pb2.TokenChunk:
    """A tier's TokenChunk; TierUnavailable (the tier breaks the protocol) when it cannot be read."""
    try:
        return decode(events_pb2.TokenChunk, data, limit=limit)
    except CascadeError as exc:
        raise TierUnavailable(f"tier {tier!r} sent an unreadable TokenChunk: {exc.message}") from None


def _too_large(exc: MaxPayloadError, what: str) -> Overloaded:
    # The NATS server's own max_payload (an external server may allow less than nats.max_payload_bytes).
    return Overloaded(f"the request is too large to send to {what} over NATS: {exc}")


class RouterClient:
    def __init__(self, nc: NatsClient, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD) -> None:
        self._nc, self._max_payload = nc, max_payload_bytes

    async def route(self, *, request_id: str, text: str, timeout_s: float) -> Decision:
        if down := nats_down(self._nc, doing="reach the router"):
            raise down
        # The router skips a request whose caller stopped waiting (a backlog after an outage).
        deadline_ms = int((time.time() + timeout_s) * 1e3)
        request = events_pb2.RouteRequest(request_id=request_id, text=text, deadline_unix_ms=deadline_ms)
        payload = request.SerializeToString()
        try:
            msg = await self._nc.request(subjects.ROUTE, payload, timeout=timeout_s, headers=inject_headers())
        except NoRespondersError:
            raise Unavailable("no router is running") from None
        except MaxPayloadError as exc:
            raise _too_large(exc, "the router") from None
        except (NatsTimeoutError, TimeoutError):
            raise nats_down(self._nc, doing="reach the router") or Unavailable(
                f"router did not answer within {timeout_s}s"
            ) from None
        return decode_decision(msg.data, limit=self._max_payload)


class ChunkInbox:
    """Every answer's TokenChunks on one wildcard subscription, each handed to the stream waiting for it.

    A subscription per answer cost a SUB and an UNSUB write per request, and ``Subscription.next_msg``
    two tasks and a uuid4 per chunk: py-spy on the gateway under bench.overhead (concurrency 32) put
    7% of its CPU in next_msg's wait_for/create_task/WeakSet and 20% in NATS socket writes.
    """

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = f"{subjects.CHUNK_INBOX_PREFIX}.{nc.new_inbox().rsplit('.', 1)[-1]}"
        self._ids = itertools.count()
        # None in a queue: the NATS connection dropped, and chunks sent meanwhile are lost.
        self._queues: dict[str, asyncio.Queue[bytes | None]] = {}
        self._subscribing = asyncio.Lock()
        self._subscribed = False

    async def open(self) -> tuple[str, asyncio.Queue[bytes | None]]:
        """A new chunk subject and the queue its payloads arrive on; ``close`` it when done."""
        if not self._subscribed:
            async with self._subscribing:  # concurrent first requests share one SUB
                if not self._subscribed:
                    await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_chunk)
                    self._subscribed = True
        subject = f"{self._prefix}.{next(self._ids)}"
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queues[subject] = queue
        return subject, queue

    def close(self, subject: str) -> None:
        self._queues.pop(subject, None)  # late chunks for it are dropped

    def connection_lost(self) -> None:
        """Every answer being received ends: NATS core does not resend what a reconnect dropped."""
        for queue in self._queues.values():
            queue.put_nowait(None)

    async def _on_chunk(self, msg: Msg) -> None:
        queue = self._queues.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg.data)


class TierClient:
    """Sends a TierRequest and yields the answer's pieces, checking order and silence."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        accept_timeout_s: float,
        idle_timeout_s: float,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._nc, self._max_payload = nc, max_payload_bytes
        self._accept_timeout_s = accept_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._inbox = ChunkInbox(nc)

    def connection_lost(self) -> None:
        """The NATS connection dropped: answers in progress fail now (UNAVAILABLE), not at their deadline.

        Found by bench.chaos: chunks a worker sent while nats-server restarted were lost, and the
        request waited for them until its deadline (or a gateway shutdown's grace ran out: CANCELLED).
        """
        self._inbox.connection_lost()

    async def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]:
        if down := nats_down(self._nc, doing=f"reach tier {tier!r}"):
            raise down
        request = wire.tier_request(call)
        request.chunk_subject, chunks = await self._inbox.open()
        finished = False
        try:
            accept = await self._send(tier, request)
            seq = 0
            while not finished:
                chunk = await self._next_chunk(chunks, tier)
                if chunk.seq != seq:
                    raise TierUnavailable(f"tier {tier} lost chunk {seq} (got {chunk.seq})")
                seq += 1
                finished = chunk.final
                if chunk.HasField("error") and chunk.error.code:
                    raise error_for_code(chunk.error.code, chunk.error.message)
                piece = wire.piece(chunk)
                yield dataclasses.replace(piece, backend=accept.backend, model=accept.model) if finished else piece
        finally:
            self._inbox.close(request.chunk_subject)
            if not finished and self._nc.is_connected:  # we stopped listening early: let the worker stop
                await self._nc.publish(subjects.CANCEL, request.chunk_subject.encode())

    async def _send(self, tier: str, request: events_pb2.TierRequest) -> events_pb2.TierAccept:
        payload, subject = request.SerializeToString(), subjects.tier_subject(tier)
        # "No responders" is retried a few times (admission is idempotent: nothing was started). A worker
        # that has just subscribed is not always seen at once: measured here, a request from a second
        # connection right after SUB + PING/PONG on the first got no responders 2-3 times in 30 on a
        # loaded 2-core machine, and a retry 0.5 s later always got through.
        for backoff_s in (*ADMISSION_RETRIES_S, None):
            # Never waits past the request's deadline (the caller would have its answer late or never).
            timeout_s = self._accept_timeout_s
            if request.deadline_unix_ms:
                timeout_s = max(0.001, min(timeout_s, request.deadline_unix_ms / 1e3 - time.time()))
            try:
                reply = await self._nc.request(subject, payload, timeout=timeout_s, headers=inject_headers())
                break
            except MaxPayloadError as exc:
                raise _too_large(exc, f"tier {tier!r}") from None
            except NoRespondersError:
                if backoff_s is None:
                    raise TierUnavailable(f"no worker is serving tier {tier!r}") from None
                await asyncio.sleep(backoff_s)
            except (NatsTimeoutError, TimeoutError):
                raise nats_down(self._nc, doing=f"reach tier {tier!r}") or TierUnavailable(
                    f"tier {tier!r} did not accept within {timeout_s:.3g}s"
                ) from None
        return decode_accept(reply.data, tier, limit=self._max_payload)

    async def _next_chunk(self, chunks: asyncio.Queue[bytes | None], tier: str) -> events_pb2.TokenChunk:
        if chunks.empty():  # a burst of chunks is read without a timer each
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    data = await chunks.get()
            except TimeoutError:
                raise nats_down(self._nc, doing=f"hear from tier {tier!r}") or TierUnavailable(
                    f"tier {tier!r} went silent for {self._idle_timeout_s}s"
                ) from None
        else:
            data = chunks.get_nowait()
        if data is None:
            raise nats_down(self._nc, doing=f"hear from tier {tier!r}") or NatsUnavailable(
                f"NATS connection lost while tier {tier!r} was answering"
            )
        return decode_chunk(data, tier, limit=self._max_payload)
