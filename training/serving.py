"""The model of a kind in service in the config's registry, fetched and loaded (for evaluate's comparison)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.core.nats import connect_from_settings
from services.core.settings import CascadeSettings
from services.registry.kinds import kind_of
from services.registry.manage import ModelRegistry


async def serving_model(settings: CascadeSettings, *, kind: str, cache: Path, candidate: str) -> Any | None:
    """The ``kind`` model in service (None: none, or the candidate itself), loaded and probed."""
    nc = await connect_from_settings(settings.nats, name="cascade-train-evaluate", wait_s=5)
    try:
        registry = ModelRegistry(nc=nc, bucket=settings.router.registry_bucket)
        current = await registry.serving(kind)
        if current is None or current == candidate:
            return None
        path = await registry.fetch(kind=kind, version=current, cache_dir=cache)
    finally:
        await nc.drain()
    return await asyncio.to_thread(kind_of(kind).load, path)
