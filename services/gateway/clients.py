"""The gateway's NATS clients for the router and the tier workers: plain values in and out, protobuf inside."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import InternalError, TierUnavailable, Unavailable, error_for_code
from services.core.nats import nats_down
from services.core.telemetry import inject_headers
from services.gateway import wire
from services.gateway.domain import Decision, Piece, TierCall

log = logging.getLogger(__name__)


class RouterClient:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def route(self, *, request_id: str, text: str, timeout_s: float) -> Decision:
        if down := nats_down(self._nc, doing="reach the router"):
            raise down
        payload = events_pb2.RouteRequest(request_id=request_id, text=text).SerializeToString()
        try:
            msg = await self._nc.request(subjects.ROUTE, payload, timeout=timeout_s, headers=inject_headers())
        except NoRespondersError:
            raise Unavailable("no router is running") from None
        except (NatsTimeoutError, TimeoutError):
            raise nats_down(self._nc, doing="reach the router") or Unavailable(
                f"router did not answer within {timeout_s}s"
            ) from None
        try:
            return wire.decision(events_pb2.RouteDecision.FromString(msg.data))
        except DecodeError:
            raise Unavailable("router sent a malformed RouteDecision") from None


class TierClient:
    """Sends a TierRequest and yields the answer's pieces, checking order and silence."""

    def __init__(self, nc: NatsClient, *, accept_timeout_s: float, idle_timeout_s: float) -> None:
        self._nc = nc
        self._accept_timeout_s = accept_timeout_s
        self._idle_timeout_s = idle_timeout_s

    async def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]:
        if down := nats_down(self._nc, doing=f"reach tier {tier!r}"):
            raise down
        request = wire.tier_request(call)
        request.chunk_subject = f"{subjects.CHUNK_INBOX_PREFIX}.{self._nc.new_inbox().rsplit('.', 1)[-1]}"
        sub = await self._nc.subscribe(request.chunk_subject)
        finished = False
        try:
            await self._send(tier, request)
            seq = 0
            while not finished:
                chunk = await self._next_chunk(sub, tier)
                if chunk.seq != seq:
                    raise TierUnavailable(f"tier {tier} lost chunk {seq} (got {chunk.seq})")
                seq += 1
                finished = chunk.final
                if chunk.HasField("error") and chunk.error.code:
                    raise error_for_code(chunk.error.code, chunk.error.message)
                yield wire.piece(chunk)
        finally:
            await sub.unsubscribe()
            if not finished and self._nc.is_connected:  # we stopped listening early: let the worker stop
                await self._nc.publish(subjects.CANCEL, request.request_id.encode())

    async def _send(self, tier: str, request: events_pb2.TierRequest) -> None:
        try:
            reply = await self._nc.request(
                subjects.tier_subject(tier),
                request.SerializeToString(),
                timeout=self._accept_timeout_s,
                headers=inject_headers(),
            )
        except NoRespondersError:
            raise TierUnavailable(f"no worker is serving tier {tier!r}") from None
        except (NatsTimeoutError, TimeoutError):
            raise nats_down(self._nc, doing=f"reach tier {tier!r}") or TierUnavailable(
                f"tier {tier!r} did not accept within {self._accept_timeout_s}s"
            ) from None
        accept = events_pb2.TierAccept.FromString(reply.data)
        if accept.HasField("error") and accept.error.code:
            raise error_for_code(accept.error.code, accept.error.message)

    async def _next_chunk(self, sub, tier: str) -> events_pb2.TokenChunk:  # type: ignore[no-untyped-def]
        try:
            msg = await sub.next_msg(timeout=self._idle_timeout_s)
        except (NatsTimeoutError, TimeoutError):
            raise nats_down(self._nc, doing=f"hear from tier {tier!r}") or TierUnavailable(
                f"tier {tier!r} went silent for {self._idle_timeout_s}s"
            ) from None
        try:
            return events_pb2.TokenChunk.FromString(msg.data)
        except DecodeError:
            raise InternalError(f"tier {tier!r} sent a malformed TokenChunk") from None
