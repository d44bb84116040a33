"""NATS edge of the router: RouteRequest in, RouteDecision out (and published for observers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import Service

from cascade.v1 import events_pb2
from services.core import metrics, subjects
from services.core.calibration import CalibrationFile
from services.core.liveness import announce, withdraw
from services.core.logs import REQUEST_ID
from services.core.nats import drain_subscription
from services.core.settings import CascadeSettings
from services.core.telemetry import extract_context, tracer
from services.registry import store
from services.registry.follow import Follower
from services.router.policy import ModelHolder, ThresholdPolicy

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc = nc
        self._settings = settings.router
        # A model path loads now; a published model is fetched in start(), once NATS is there.
        self._holder = ModelHolder(None if self._settings.published else self._settings.model)
        calibration = settings.escalation.calibration
        self.policy = ThresholdPolicy(
            holder=self._holder,
            settings=settings.router,
            calibration=CalibrationFile(
                calibration, interval_s=self._settings.reload_interval_s, n_tiers=len(self._settings.tiers)
            )
            if calibration
            else None,
        )
        self._reloader: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._live: Service | None = None
        self._follower: Follower | None = None
        if self._settings.published:
            s = self._settings
            self._follower = Follower(
                nc=nc,
                kind="router",
                bucket=s.registry_bucket,
                cache_dir=s.cache_dir,
                interval_s=s.reload_interval_s,
                serving=self._version,
                swap=lambda model: self._holder.install(model, model.path),
            )

    async def start(self) -> None:
        s = self._settings
        if self._follower is not None:
            assert s.published is not None
            model = await self._follower.load(s.published)
            self._holder.install(model, model.path)
            log.info("router model %s fetched from bucket %s (%s)", model.version, s.registry_bucket, s.published)
        self._sub = await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self._on_request)
        self._live = await announce(self._nc, subjects.ROUTER_SERVICE, description="prompt-cascade router")
        # A pinned published version never changes: only a path or "latest" is worth watching.
        if self._follower is not None and s.published == store.LATEST:
            await self._follower.start()
        elif self._follower is None and s.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())
        model = self._holder.model
        log.info(
            "router serving model %s (pair %s), threshold %.4f",
            model.version,
            model.pair,
            self.policy.threshold(),
        )

    async def stop(self) -> None:
        """Stop taking requests, answering every one already delivered; then stop following models."""
        if self._live is not None:
            await withdraw(self._nc, self._live)
            self._live = None
        if self._sub is not None:
            await drain_subscription(self._nc, self._sub, what="the router's requests")
            self._sub = None
        if self._follower is not None:
            await self._follower.stop()
        if self._reloader:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader

    async def _reload_loop(self) -> None:
        """A model path: swap in a changed file (the published case is the Follower's)."""
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            try:
                await asyncio.to_thread(self._holder.reload_if_changed)
            except Exception:  # the loop must outlive any one bad check
                log.exception("router model check failed, still serving %s", self._version())

    def _version(self) -> str:
        return self._holder.model.version

    async def _on_request(self, msg: Msg) -> None:
        with tracer(__name__).start_as_current_span("router.route", context=extract_context(msg.headers)) as span:
            reply = self._decide(msg.data)
            if span.is_recording():
                span.set_attributes(
                    {
                        "cascade.request_id": reply.request_id,
                        "cascade.tier": reply.tier,
                        "cascade.router.score": reply.score,
                        "cascade.router.threshold": reply.threshold,
                        "cascade.router.model_version": reply.model_version,
                        "cascade.router.error": reply.error,
                    }
                )
        if reply.request_id and not reply.error:  # a probe or a fallback is no score to count
            metrics.ROUTER_DURATION.record(reply.latency_ms / 1e3)
            metrics.ROUTER_SCORE.record(reply.score, {"tier": reply.tier, "model_version": reply.model_version})
        payload = reply.SerializeToString()
        if msg.reply:
            await msg.respond(payload)
        if reply.request_id:  # a request without an id (malformed) decides nothing worth publishing
            await self._nc.publish(subjects.DECISIONS, payload)

    def _decide(self, data: bytes) -> events_pb2.RouteDecision:
        try:
            request = events_pb2.RouteRequest.FromString(data)
        except DecodeError:
            log.warning("malformed RouteRequest (%d bytes), answering with the fallback tier", len(data))
            return events_pb2.RouteDecision(tier=self._settings.fallback_tier, error="malformed RouteRequest")
        REQUEST_ID.set(request.request_id)
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
            thresholds=d.thresholds,
        )
