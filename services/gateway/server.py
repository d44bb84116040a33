"""The gateway process: gRPC server (Cascade, health, reflection) wired to NATS and JetStream."""

from __future__ import annotations

import logging

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NatsClient

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, events_pb2
from classifier.confidence import ConfidenceModel, load_confidence
from services.core import metrics, subjects
from services.core.calibration import CalibrationFile
from services.core.errors import ConfigError, Unavailable
from services.core.settings import CascadeSettings, GatewaySettings
from services.gateway import wire
from services.gateway.auth import Authenticator
from services.gateway.cascade import Cascade
from services.gateway.clients import RouterClient, TierClient
from services.gateway.interceptor import GatewayInterceptor
from services.gateway.metrics import observe
from services.gateway.record import RequestRecord
from services.gateway.redact import Redactor
from services.gateway.routing import EmbeddedRouter
from services.gateway.servicer import CascadeServicer
from services.gateway.tiers import GatewayTiers
from services.outcomes import (
    OutcomePublisher,
    SeenRequests,
    Spool,
    SpooledEvent,
    ensure_seen_stream,
    ensure_stream,
    outcome_id,
)
from services.registry import store
from services.registry.follow import Follower

log = logging.getLogger(__name__)
SERVICE_NAME = cascade_pb2.DESCRIPTOR.services_by_name["Cascade"].full_name
_STOPPED = Unavailable("the gateway stopped before the request finished (killed or crashed)")


class GatewayService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc, self._settings = nc, settings
        self._server: aio.Server | None = None
        self._stopping = False
        self._health = health.aio.HealthServicer()
        self.port: int = settings.gateway.port
        self._js = nc.jetstream()
        out = settings.outcomes
        spool = Spool(
            out.spool_dir,
            max_bytes=out.spool_max_bytes,
            fsync=out.spool_fsync,
            fsync_interval_s=out.spool_fsync_interval_s,
        )
        self.outcomes = OutcomePublisher(nc, spool=spool, stream=out, timeout_s=out.publish_timeout_s)
        metrics.watch_outcomes(spool)
        self.seen = SeenRequests(nc, publisher=self.outcomes, settings=out)
        self._follower: Follower | None = None
        self._held: dict[int, SpooledEvent] = {}  # id(record) -> its provisional outcome in the spool
        self._tier_client: TierClient | None = None
        self._tiers: GatewayTiers | None = None

        # router.mode embedded: prompts are scored in this process (see services/gateway/routing.py).
        self.router = EmbeddedRouter(nc=nc, settings=settings) if settings.router.mode == "embedded" else None
        self._redact = Redactor()  # from settings in start(): loading a hook may fail
        self.cascade: Cascade  # built in start(); a scorer follower swaps its confidence model

    async def _confidence(self) -> ConfidenceModel:
        """The configured confidence model; a published scorer is fetched and, for "latest", followed."""
        esc, r = self._settings.escalation, self._settings.router
        if esc.published is None:
            return load_confidence(esc.confidence, esc.confidence_model)
        follower = Follower(
            nc=self._nc,
            kind="scorer",
            bucket=r.registry_bucket,
            cache_dir=r.cache_dir,
            interval_s=r.reload_interval_s,
            serving=lambda: self.cascade.confidence.version,
            swap=lambda model: setattr(self.cascade, "confidence", model),  # one assignment: atomic
        )
        model: ConfidenceModel = await follower.load(esc.published)
        if esc.published == store.LATEST:
            self._follower = follower
        log.info("scorer %s fetched from bucket %s (%s)", model.version, r.registry_bucket, esc.published)
        return model

    def _cascade(self, confidence: ConfidenceModel) -> Cascade:
        gw, esc = self._settings.gateway, self._settings.escalation
        limit = self._settings.nats.max_payload_bytes
        self._tier_client = TierClient(
            self._nc,
            accept_timeout_s=gw.tier_accept_timeout_s,
            idle_timeout_s=gw.chunk_idle_timeout_s,
            max_payload_bytes=limit,
        )
        # tiers.<name>.mode embedded: that tier's backend is called here (services/gateway/tiers.py).
        tiers = self._tiers = GatewayTiers.from_settings(self._tier_client, self._settings.tiers)
        calibration = (
            CalibrationFile(
                esc.calibration,
                interval_s=self._settings.router.reload_interval_s,
                n_tiers=len(self._settings.router.tiers),
            )
            if esc.calibration
            else None
        )
        log.info("gateway scores answers with confidence model %s (%s)", confidence.name, confidence.version)
        return Cascade(
            router=self.router or RouterClient(self._nc, max_payload_bytes=limit),
            tiers=tiers,
            record_outcome=self._record_outcome,
            on_start=self._on_start,
            settings=self._settings,
            confidence=confidence,
            calibration=calibration,
        )

    def _on_start(self, record: RequestRecord) -> None:
        """A request starts: a provisional outcome is held in the spool, then its id is recorded as seen.

        If this process dies (SIGKILL, OOM) before the request ends, the next gateway on the spool
        publishes the provisional outcome, so a request whose id was recorded is never without one: the
        spool writes every event before it publishes any, and the provisional outcome comes first.
        """
        opts = self._settings.outcomes
        event = wire.provisional_outcome(
            record.request, _STOPPED, store_prompt_text=opts.store_prompt_text, redact=self._redact
        )
        handle = self.outcomes.hold(subjects.OUTCOMES, outcome_id(event.request_id), event.SerializeToString())
        if handle is not None:
            self._held[id(record)] = handle
        self.seen.record(record.request.request_id)

    def _outcome_event(self, record: RequestRecord) -> events_pb2.OutcomeEvent:
        opts = self._settings.outcomes
        return wire.outcome(
            record,
            store_prompt_text=opts.store_prompt_text,
            store_answer_text=opts.store_answer_text,
            redact=self._redact,
        )

    def _record_outcome(self, record: RequestRecord) -> None:
        observe(record)
        event = self._outcome_event(record)
        self.outcomes.submit(subjects.OUTCOMES, outcome_id(event.request_id), event.SerializeToString())
        if (handle := self._held.pop(id(record), None)) is not None:  # after the submit: the spool keeps order
            self.outcomes.release(handle)

    async def start(self) -> None:
        # First: a confidence model, policy file or redaction hook that cannot be used stops the gateway
        # before anything runs.
        self._redact = Redactor.from_settings(self._settings.outcomes)
        if self.router is not None:
            await self.router.start()
        cascade = self.cascade = self._cascade(await self._confidence())
        if self._follower is not None:
            await self._follower.start()
        await ensure_stream(self._js, self._settings.outcomes)
        await ensure_seen_stream(self._js, self._settings.outcomes)
        self.outcomes.start()  # locks the spool dir; publishes what an earlier (killed) gateway left there
        interceptor = GatewayInterceptor(service=SERVICE_NAME, auth=Authenticator(self._settings.gateway))
        # Larger messages are refused by gRPC itself (RESOURCE_EXHAUSTED) before they are decoded.
        options = [("grpc.max_receive_message_length", self._settings.gateway.max_request_bytes)]
        server = aio.server(interceptors=[interceptor], options=options)
        servicer = CascadeServicer(cascade=cascade, outcomes=self.outcomes, seen=self.seen, settings=self._settings)
        cascade_pb2_grpc.add_CascadeServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self._settings.gateway.reflection:
            names = (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        gw = self._settings.gateway
        address = f"{gw.host}:{gw.port}"
        credentials = _server_credentials(gw)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        self._server = server
        await self._set_health(serving=self._nc.is_connected)
        log.info("gateway listening on %s:%d", gw.host, self.port)

    async def nats_connection_changed(self, connected: bool) -> None:
        """NOT_SERVING while NATS is away (no route, no tier, no outcome can be had), SERVING once back.

        Load balancers, orchestrators and `cascade up` read the standard gRPC health service, so
        they stop sending requests here that could only end in UNAVAILABLE. Answers being received
        fail at once: chunks sent while the connection was down are lost.
        """
        if not connected and self._tier_client is not None:
            self._tier_client.connection_lost()
        if self._server is None or self._stopping:  # not started (start() reads it), or shutting down
            return
        log.warning("NATS %s: gateway health %s", *(("is back", "SERVING") if connected else ("lost", "NOT_SERVING")))
        await self._set_health(serving=connected)

    async def _set_health(self, *, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)  # ignored once shutdown has begun: NOT_SERVING stays

    async def stop(self, *, grace_s: float = 10.0) -> None:
        self._stopping = True  # the drain that follows closes NATS: that is no outage to report
        await self._health.enter_graceful_shutdown()
        if self._follower is not None:
            await self._follower.stop()
        if self.router is not None:
            await self.router.stop()
        if self._server is not None:
            await self._server.stop(grace_s)
        if hasattr(self, "cascade"):  # shadow answers still running publish their outcomes before the flush
            await self.cascade.exploration.close(timeout_s=grace_s)
        if self._tiers is not None:
            await self._tiers.aclose()
        await self.outcomes.close()


def _server_credentials(gw: GatewaySettings) -> grpc.ServerCredentials | None:
    if gw.tls_cert is None or gw.tls_key is None:
        return None
    try:
        pair = (gw.tls_key.read_bytes(), gw.tls_cert.read_bytes())
        client_ca = gw.tls_client_ca.read_bytes() if gw.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"cannot read the gateway's TLS files: {exc}") from exc
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)
