"""The HTTP front door's process: a uvicorn server and one gRPC channel to the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import grpc
import uvicorn
from grpc import aio

from cascade.v1 import cascade_pb2_grpc
from services.core.errors import ConfigError, Unavailable
from services.core.settings import CascadeSettings
from services.http.app import create_app
from services.http.catalog import Catalog
from services.http.serving import OpenAIServing

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # The process's signals belong to services.core.lifecycle, which stops this server in order.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:
    def __init__(self, *, settings: CascadeSettings) -> None:
        self._settings = settings
        self.port: int = settings.http.port
        self._channel: aio.Channel | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        http = self._settings.http
        self._channel = gateway_channel(self._settings)
        serving = OpenAIServing(
            stub=cascade_pb2_grpc.CascadeStub(self._channel),
            catalog=(catalog := Catalog(settings=self._settings, created=int(time.time()))),
            timeout_s=http.request_timeout_s,
        )
        # One place of truth for tokens: with gateway.tenants (then api_keys_sha256 is empty) the front
        # door lets in the tenants' tokens and passes each caller's on, and the gateway decides its tenant.
        tenants = self._settings.gateway.tenants.values()
        keys = http.api_keys_sha256 or tuple(d for t in tenants for d in t.tokens_sha256)
        app = create_app(serving=serving, catalog=catalog, api_keys_sha256=keys, max_body_bytes=http.max_body_bytes)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=http.shutdown_grace_s,
            # httptools (C), not h11: py-spy under bench.overhead's http path put ~13% of this process
            # in h11's parsing and uvicorn's h11 protocol. Named, so a missing httptools fails loudly.
            http="httptools",
        )
        self._server = _Server(config)
        sock = _bind(http.host, http.port)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await self._wait_started()
        log.info(
            "OpenAI-compatible HTTP API on http://%s:%d/v1, gateway %s", http.host, self.port, target(self._settings)
        )

    async def _wait_started(self) -> None:
        assert self._server is not None and self._task is not None
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise Unavailable(f"the HTTP server on port {self.port} stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        if self._channel is not None:
            await self._channel.close()


def _bind(host: str, port: int) -> socket.socket:
    # Bound here, not by uvicorn, so that port 0 works and the chosen port is known.
    # proto=IPPROTO_TCP: asyncio then sets TCP_NODELAY, without which small SSE events wait ~40 ms.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def target(settings: CascadeSettings) -> str:
    """The gateway address: http.gateway_target, else gateway.host:port (a wildcard host: this machine)."""
    if settings.http.gateway_target:
        return settings.http.gateway_target
    gw = settings.gateway
    host = "127.0.0.1" if gw.host in ("0.0.0.0", "::", "") else gw.host
    return f"{host}:{gw.port}"


def gateway_channel(settings: CascadeSettings) -> aio.Channel:
    credentials = _channel_credentials(settings)
    if credentials is None:
        return aio.insecure_channel(target(settings))
    return aio.secure_channel(target(settings), credentials)


def _channel_credentials(settings: CascadeSettings) -> grpc.ChannelCredentials | None:
    gw, http = settings.gateway, settings.http
    if gw.tls_cert is None and http.gateway_tls_ca is None:
        return None
    ca = http.gateway_tls_ca or gw.tls_cert
    cert, key = http.gateway_tls_client_cert, http.gateway_tls_client_key
    if cert is None and gw.tls_client_ca is not None:
        cert, key = gw.tls_cert, gw.tls_key
    try:
        return grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes() if ca else None,
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS files for the gateway connection: {exc}") from exc
