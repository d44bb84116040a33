"""Run the HTTP front door: ``python -m services.http [--config FILE]``.

It needs no NATS: it is a client of the gateway (``http.gateway_target``, else ``gateway.host:port``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from services.core.errors import CascadeError, ConfigError
from services.core.lifecycle import run_service
from services.core.metrics import setup_metrics
from services.core.settings import load_settings
from services.core.telemetry import setup_tracing
from services.http.server import HttpService

log = logging.getLogger("services.http")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.http", description="Serve the OpenAI-compatible HTTP API in front of the gateway."
    )
    parser.add_argument("--config", type=Path, help="YAML config file (default: $CASCADE_CONFIG)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        parser.exit(2, f"{exc}\n")

    async def serve(stop: asyncio.Event) -> None:
        setup_tracing("cascade-http", settings.telemetry)
        setup_metrics("cascade-http", settings.telemetry)
        service = HttpService(settings=settings)
        await service.start()
        log.info("http ready")
        try:
            await stop.wait()
        finally:
            await service.stop()
            log.info("http stopped")

    try:
        run_service("http", serve, log_format=settings.telemetry.log_format)
    except CascadeError as exc:
        log.error("http failed: %s", exc)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
