"""The gateway process: gRPC server (Cascade, health, reflection) wired to NATS and JetStream."""

from __future__ import annotations

import logging

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client as NatsClient

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from classifier.confidence import load_confidence
from services.core import subjects
from services.core.calibration import CalibrationFile
from services.core.errors import ConfigError
from services.core.settings import CascadeSettings, GatewaySettings
from services.gateway import wire
from services.gateway.cascade import Cascade
from services.gateway.clients import RouterClient, TierClient
from services.gateway.interceptor import ErrorInterceptor
from services.gateway.record import RequestRecord
from services.gateway.servicer import CascadeServicer
from services.outcomes import OutcomePublisher, Spool, ensure_stream

log = logging.getLogger(__name__)
SERVICE_NAME = cascade_pb2.DESCRIPTOR.services_by_name["Cascade"].full_name


class GatewayService:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc, self._settings = nc, settings
        self._server: aio.Server | None = None
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

    def _cascade(self) -> Cascade:
        gw, esc = self._settings.gateway, self._settings.escalation
        tiers = TierClient(self._nc, accept_timeout_s=gw.tier_accept_timeout_s, idle_timeout_s=gw.chunk_idle_timeout_s)
        # Loaded once, here: a model or policy file that cannot be used stops the gateway at start.
        confidence = load_confidence(esc.confidence, esc.confidence_model)
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
            router=RouterClient(self._nc),
            tiers=tiers,
            record_outcome=self._record_outcome,
            settings=self._settings,
            confidence=confidence,
            calibration=calibration,
        )

    def _record_outcome(self, record: RequestRecord) -> None:
        event = wire.outcome(record, store_prompt_text=self._settings.outcomes.store_prompt_text)
        self.outcomes.submit(subjects.OUTCOMES, f"outcome:{event.request_id}", event.SerializeToString())

    async def start(self) -> None:
        cascade = self._cascade()  # first: a bad confidence model or policy file fails before anything runs
        await ensure_stream(self._js, self._settings.outcomes)
        self.outcomes.start()  # locks the spool dir; publishes what an earlier (killed) gateway left there
        server = aio.server(interceptors=[ErrorInterceptor()])
        servicer = CascadeServicer(cascade=cascade, outcomes=self.outcomes, settings=self._settings)
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
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway listening on %s:%d", gw.host, self.port)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace_s)
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
