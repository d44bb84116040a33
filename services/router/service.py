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
from services.core.calibration import CalibrationFile
from services.core.errors import ModelError, Unavailable
from services.core.settings import CascadeSettings
from services.core.telemetry import extract_context, tracer
from services.router import registry
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
        self._seen_version: str | None = None  # the last published version tried, good or bad

    async def start(self) -> None:
        if self._settings.published:
            await self._load_published()
        await self._nc.subscribe(subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self._on_request)
        # A pinned published version never changes: only a path or "latest" is worth watching.
        if self._settings.reload_interval_s > 0 and self._settings.published in (None, registry.LATEST):
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

    async def _load_published(self) -> None:
        s = self._settings
        assert s.published is not None
        path = await registry.fetch(
            self._nc.jetstream(), bucket=s.registry_bucket, version=s.published, cache_dir=s.cache_dir
        )
        model = await asyncio.to_thread(self._holder.load, path)
        self._seen_version = path.name  # the registry's name for it (fetch keeps one folder per version)
        log.info("router model %s fetched from bucket %s (%s)", model.version, s.registry_bucket, s.published)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_s)
            try:
                if self._settings.published:
                    await self._follow_latest()
                else:
                    await asyncio.to_thread(self._holder.reload_if_changed)
            except (Unavailable, ModelError) as exc:  # NATS hiccup, or a bad `latest`: try again next time
                log.warning("cannot check for a new router model, still serving %s: %s", self._version(), exc)
            except Exception:  # the loop must outlive any one bad check
                log.exception("router model check failed, still serving %s", self._version())

    async def _follow_latest(self) -> None:
        s = self._settings
        js = self._nc.jetstream()
        version = await registry.current_version(js, bucket=s.registry_bucket)
        if version is None or version in (self._seen_version, self._version()):
            return
        try:
            path = await registry.fetch(js, bucket=s.registry_bucket, version=version, cache_dir=s.cache_dir)
        except ModelError as exc:
            self._seen_version = version  # refused once, said once: not retried every interval
            log.error("refused published router model %s, still serving %s: %s", version, self._version(), exc)
            return
        self._seen_version = version
        await asyncio.to_thread(self._holder.switch_to, path)

    def _version(self) -> str:
        return self._holder.model.version

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
            thresholds=d.thresholds,
        )
