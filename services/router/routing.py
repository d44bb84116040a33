"""The router's work without its NATS edge: the model (loaded, fetched, hot-swapped), the policy, decisions.

The router service (service.py) serves it on ``cascade.route``; a gateway with ``router.mode: embedded``
calls it in its own process (services/gateway/routing.py), which saves a NATS round trip and a
process hop per request. Both load, follow and reload the model the same way and give the same
RouteDecision (tier, score, threshold(s), model version, latency, error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NatsClient

from cascade.v1 import events_pb2
from services.core import metrics
from services.core.calibration import CalibrationFile
from services.core.settings import CascadeSettings
from services.registry import store
from services.registry.follow import Follower
from services.router.policy import ModelHolder, ThresholdPolicy

log = logging.getLogger(__name__)


class Routing:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._settings = s = settings.router
        # A model path loads now; a published model is fetched in start(), once NATS is there.
        self.holder = ModelHolder(None if s.published else s.model)
        calibration = settings.escalation.calibration
        self.policy = ThresholdPolicy(
            holder=self.holder,
            settings=s,
            calibration=CalibrationFile(calibration, interval_s=s.reload_interval_s, n_tiers=len(s.tiers))
            if calibration
            else None,
        )
        self._reloader: asyncio.Task[None] | None = None
        self._follower: Follower | None = None
        if s.published:
            self._follower = Follower(
                nc=nc,
                kind="router",
                bucket=s.registry_bucket,
                cache_dir=s.cache_dir,
                interval_s=s.reload_interval_s,
                serving=self.version,
                swap=lambda model: self.holder.install(model, model.path),
            )

    async def load(self) -> None:
        """Fetch a published model (a model path was loaded in __init__)."""
        s = self._settings
        if self._follower is not None:
            assert s.published is not None
            model = await self._follower.load(s.published)
            self.holder.install(model, model.path)
            log.info("router model %s fetched from bucket %s (%s)", model.version, s.registry_bucket, s.published)

    async def watch(self) -> None:
        """Start swapping in new models: "latest" from the registry, or a changed model file."""
        s = self._settings
        # A pinned published version never changes: only a path or "latest" is worth watching.
        if self._follower is not None and s.published == store.LATEST:
            await self._follower.start()
        elif self._follower is None and s.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_loop())
        model = self.holder.model
        log.info(
            "router serving model %s (pair %s), threshold %.4f", model.version, model.pair, self.policy.threshold()
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
                await asyncio.to_thread(self.holder.reload_if_changed)
            except Exception:  # the loop must outlive any one bad check
                log.exception("router model check failed, still serving %s", self.version())

    def version(self) -> str:
        return self.holder.model.version

    def decide(self, request_id: str, text: str) -> events_pb2.RouteDecision:
        """The decision for one prompt; a scoring failure gives the fallback tier and says why."""
        try:
            d = self.policy.decide(text)
        except Exception as exc:  # a scoring failure must not stop routing: fall back, say why
            log.exception("scoring failed for request %s", request_id)
            return events_pb2.RouteDecision(
                request_id=request_id, tier=self._settings.fallback_tier, error=f"scoring failed: {exc}"
            )
        # Counted here, so the router service and an embedded router (gateway) both feed the same series.
        metrics.ROUTER_DURATION.record(d.latency_ms / 1e3)
        metrics.ROUTER_SCORE.record(d.score, {"tier": d.tier, "model_version": d.model_version})
        return events_pb2.RouteDecision(
            request_id=request_id,
            tier=d.tier,
            score=d.score,
            threshold=d.threshold,
            model_version=d.model_version,
            latency_ms=d.latency_ms,
            thresholds=d.thresholds,
        )
