"""NATS edge of the router: RouteRequest in, RouteDecision out (and published for observers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.calibration import CalibrationFile
from services.core.errors import CascadeError
from services.core.payloads import decode
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
        self._max_payload = settings.nats.max_payload_bytes
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
        await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self.handle_request)
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

    async def handle_request(self, msg: Msg) -> None:
        """The ROUTE subscription's callback: answers every payload, a malformed one with the fallback tier."""
        with tracer(__name__).start_as_current_span("router.route", context=extract_context(msg.headers)) as span:
            reply = self.decide(msg.data)
            span.set_attribute("cascade.tier", reply.tier)
            span.set_attribute("cascade.router_score", reply.score)
        payload = reply.SerializeToString()
        if msg.reply:
            await msg.respond(payload)
        if reply.request_id:  # an empty id is a liveness probe, not a decision worth publishing
            await self._nc.publish(subjects.DECISIONS, payload)

    def decide(self, data: bytes) -> events_pb2.RouteDecision:
        """The RouteDecision for a RouteRequest payload; never raises (a failure is the decision's error)."""
        try:
            request = decode(events_pb2.RouteRequest, data, limit=self._max_payload)
        except CascadeError as exc:
            log.warning("refused a RouteRequest, answering with the fallback tier: %s", exc.message)
            return events_pb2.RouteDecision(tier=self._settings.fallback_tier, error=exc.message)
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
