"""NATS edge of the router: RouteRequest in, RouteDecision out (and published for observers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.settings import CascadeSettings
from services.router.policy import ModelHolder, ThresholdPolicy

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc = nc
        self._settings = settings.router
        self._holder = ModelHolder(settings.router.model)
        self.policy = ThresholdPolicy(holder=self._holder, settings=settings.router)
        self._reloader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self._on_request)
        if self._settings.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())
        model = self._holder.model
        log.info(
            "router serving model %s (pair %s), threshold %.4f",
            model.version,
            model.pair,
            self.policy.threshold(),
        )

    async def stop(self) -> None:
        if self._reloader:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            await asyncio.to_thread(self._holder.reload_if_changed)

    async def _on_request(self, msg: Msg) -> None:
        reply = self._decide(msg.data)
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
            return events_pb2.RouteDecision(tier=self._settings.fallback_tier, error="malformed RouteRequest")
        try:
            d = self.policy.decide(request.text)
        except Exception as exc:  # a scoring failure must not stop routing: fall back, say why
            log.exception("scoring failed for request %s", request.request_id)
            return events_pb2.RouteDecision(
                request_id=request.request_id,
                tier=self._settings.fallback_tier,
                error=f"scoring failed: {exc}",
            )
        return events_pb2.RouteDecision(
            request_id=request.request_id,
            tier=d.tier,
            score=d.score,
            threshold=d.threshold,
            model_version=d.model_version,
            latency_ms=d.latency_ms,
        )
