"""Liveness over NATS: every router and tier worker is also a NATS micro service.

A probe asks ``$SRV.PING.<name>`` (subjects.ping_subject), which nats-py's micro ``Service``
answers with the service's name, id, version and metadata; the work subjects see only real
requests. Before, probes were empty payloads on the work subjects, which every handler had to
tell apart from a request. Standard NATS tools see the services too (`nats micro ls`,
`nats micro info cascade-tier-small`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import metadata
from typing import Any

from nats import micro
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.micro.service import Service

from services.core import subjects

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("prompt-cascade")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


async def announce(nc: NatsClient, name: str, *, description: str, **meta: str) -> Service:
    """Answer pings (and INFO/STATS) as the micro service ``name`` until ``withdraw``."""
    return await micro.add_service(nc, name=name, version=_version(), description=description, metadata=meta)


async def withdraw(nc: NatsClient, service: Service, timeout_s: float = 5.0) -> None:
    """Stop answering pings: first thing on shutdown, so a probe never finds a stopping service live."""
    if not nc.is_connected:  # nothing to unsubscribe from; the connection's close drops the rest
        return
    try:
        await asyncio.wait_for(service.stop(), timeout_s)
    except (NatsError, TimeoutError) as exc:
        log.warning("could not withdraw the micro service %s: %r", service.info().name, exc)


async def ping(nc: NatsClient, name: str, *, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """The first ping reply of an instance of ``name`` (name, id, version, metadata), else None."""
    try:
        reply = await nc.request(subjects.ping_subject(name), b"", timeout=timeout_s)
    except (NoRespondersError, NatsTimeoutError):
        return None
    with contextlib.suppress(ValueError):
        answer = json.loads(reply.data)
        if isinstance(answer, dict):
            return answer
    return None
