"""The JetStream stream that holds outcome and feedback events."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from services.core import subjects
from services.core.settings import OutcomeSettings

log = logging.getLogger(__name__)


def stream_config(settings: OutcomeSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.stream,
        subjects=[subjects.OUTCOMES_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=settings.max_age_days * 86400,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_s,
    )


async def add_or_update_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a stream, or bring an existing one's configuration in line with ``config``."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_stream(js: JetStreamContext, settings: OutcomeSettings) -> None:
    """Create the stream, or bring an existing one's limits in line with the settings."""
    config = stream_config(settings)
    await add_or_update_stream(js, config)
    log.info(
        "outcome stream %s ready (max age %.0f days, max %d bytes)",
        config.name,
        settings.max_age_days,
        settings.max_bytes,
    )
