"""A one-shot command's NATS connection (model commands, publish): fail fast, never retry forever."""

from __future__ import annotations

import nats
from nats.aio.client import Client as NatsClient

from services.core.errors import Unavailable


async def connect_once(url: str, *, name: str) -> NatsClient:
    """One attempt, no reconnects; the failure is reported once by the caller, without a traceback."""

    async def quiet(_: Exception) -> None:
        pass

    try:
        return await nats.connect(url, name=name, connect_timeout=5, allow_reconnect=False, error_cb=quiet)
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"cannot connect to NATS at {url}: {exc!r}") from exc
