"""The one way a service process starts: parse args, load settings, connect NATS, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from services.core.errors import CascadeError, ConfigError
from services.core.lifecycle import run_service
from services.core.metrics import setup_metrics
from services.core.nats import ConnectionWatch, WatchesConnection, connect_from_settings
from services.core.settings import CascadeSettings, load_settings
from services.core.telemetry import setup_tracing

log = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ServiceFactory = Callable[[NatsClient, CascadeSettings, argparse.Namespace], Service]


def service_main(
    name: str,
    factory: ServiceFactory,
    *,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"Run one {name} process.")
    parser.add_argument("--config", type=Path, help="YAML config file (default: $CASCADE_CONFIG)")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        parser.exit(2, f"{exc}\n")

    async def serve(stop: asyncio.Event) -> None:
        await run_until_stopped(name, factory, settings, args, stop)

    try:
        run_service(name, serve, log_format=settings.telemetry.log_format)
    except CascadeError as exc:
        log.error("%s failed: %s", name, exc)
        raise SystemExit(1) from exc


async def run_until_stopped(
    name: str,
    factory: ServiceFactory,
    settings: CascadeSettings,
    args: argparse.Namespace,
    stop: asyncio.Event,
) -> None:
    if not settings.nats.url:
        raise ConfigError("no NATS URL configured (nats.url or CASCADE_NATS__URL); `cascade up` sets one")
    setup_tracing(f"cascade-{name}", settings.telemetry)
    setup_metrics(f"cascade-{name}", settings.telemetry)
    watch = ConnectionWatch()
    nc = await connect_from_settings(settings.nats, name=f"cascade-{name}", watch=watch)
    service = factory(nc, settings, args)
    if isinstance(service, WatchesConnection):
        watch.subscribe(service.nats_connection_changed)
    try:
        await service.start()
        log.info("%s ready", name)
        await stop.wait()
    finally:
        await service.stop()
        try:
            await nc.drain()
        except NatsError as exc:  # NATS already gone: nothing left to flush
            log.warning("%s could not drain its NATS connection: %s", name, exc)
            await nc.close()
        log.info("%s stopped", name)
