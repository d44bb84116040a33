"""NATS edge of the router: RouteRequest in, RouteDecision out (and published for observers)."""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import Service

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError
from services.core.liveness import announce, withdraw
from services.core.logs import REQUEST_ID
from services.core.nats import drain_subscription
from services.core.payloads import decode
from services.core.settings import CascadeSettings
from services.core.telemetry import extract_context, span
from services.router.routing import Routing

log = logging.getLogger(__name__)
# The error of a request that reached the router past its deadline: answered (cheaply) with the
# fallback tier, never scored, never published as a decision (its caller gave up on it).
LATE = "the request reached the router past its deadline; not scored"


class RouterService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc = nc
        self._fallback_tier = settings.router.fallback_tier
        self._max_payload = settings.nats.max_payload_bytes
        self.routing = Routing(nc=nc, settings=settings)
        self.policy, self._holder = self.routing.policy, self.routing.holder
        self._sub: Subscription | None = None
        self._live: Service | None = None

    async def start(self) -> None:
        await self.routing.load()
        self._sub = await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self.handle_request)
        self._live = await announce(self._nc, subjects.ROUTER_SERVICE, description="prompt-cascade router")
        await self.routing.watch()

    async def stop(self) -> None:
        """Stop taking requests, answering every one already delivered; then stop following models."""
        if self._live is not None:
            await withdraw(self._nc, self._live)
            self._live = None
        if self._sub is not None:
            await drain_subscription(self._nc, self._sub, what="the router's requests")
            self._sub = None
        await self.routing.stop()

    async def handle_request(self, msg: Msg) -> None:
        """The ROUTE subscription's callback: answers every payload, a malformed one with the fallback tier."""
        with span(__name__, "router.route", context=extract_context(msg.headers)) as current:
            reply = self.decide(msg.data)
            if current.is_recording():
                current.set_attributes(
                    {
                        "cascade.request_id": reply.request_id,
                        "cascade.tier": reply.tier,
                        "cascade.router.score": reply.score,
                        "cascade.router.threshold": reply.threshold,
                        "cascade.router.model_version": reply.model_version,
                        "cascade.router.error": reply.error,
                    }
                )
        payload = reply.SerializeToString()
        if msg.reply:
            await msg.respond(payload)
        if reply.request_id and reply.error != LATE:  # malformed or late: nothing decided worth publishing
            await self._nc.publish(subjects.DECISIONS, payload)

    def decide(self, data: bytes) -> events_pb2.RouteDecision:
        """The RouteDecision for a RouteRequest payload; never raises (a failure is the decision's error)."""
        try:
            request = decode(events_pb2.RouteRequest, data, limit=self._max_payload)
        except CascadeError as exc:
            log.warning("refused a RouteRequest, answering with the fallback tier: %s", exc.message)
            return events_pb2.RouteDecision(tier=self._fallback_tier, error=exc.message)
        REQUEST_ID.set(request.request_id)
        if request.deadline_unix_ms and request.deadline_unix_ms < time.time() * 1e3:
            log.info("request %s reached the router past its deadline; not scored", request.request_id)
            return events_pb2.RouteDecision(request_id=request.request_id, tier=self._fallback_tier, error=LATE)
        return self.routing.decide(request.request_id, request.text)
