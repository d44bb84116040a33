"""NATS edge of the router: RouteRequest in, RouteDecision out (and published for observers)."""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.settings import CascadeSettings
from services.core.telemetry import extract_context, tracer
from services.router.routing import Routing

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc = nc
        self._fallback_tier = settings.router.fallback_tier
        self.routing = Routing(nc=nc, settings=settings)
        self.policy, self._holder = self.routing.policy, self.routing.holder

    async def start(self) -> None:
        await self.routing.load()
        await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self._on_request)
        await self.routing.watch()

    async def stop(self) -> None:
        await self.routing.stop()

    async def _on_request(self, msg: Msg) -> None:
        with tracer(__name__).start_as_current_span("router.route", context=extract_context(msg.headers)) as span:
            reply = self._decide(msg.data)
            span.set_attribute("cascade.tier", reply.tier)
            span.set_attribute("cascade.router_score", reply.score)
        payload = reply.SerializeToString()
        if msg.reply:
            await msg.respond(payload)
        if reply.request_id:  # an empty id is a liveness probe, not a decision worth publishing
            await self._nc.publish(subjects.DECISIONS, payload)

    def _decide(self, data: bytes) -> events_pb2.RouteDecision:
        try:
            request = events_pb2.RouteRequest.FromString(data)
        except DecodeError:
            log.warning("malformed RouteRequest (%d bytes), answering with the fallback tier", len(data))
            return events_pb2.RouteDecision(tier=self._fallback_tier, error="malformed RouteRequest")
        return self.routing.decide(request.request_id, request.text)
