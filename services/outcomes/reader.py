"""Reading outcome events with a durable JetStream pull consumer (explicit acks)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from datetime import datetime

from google.protobuf.message import DecodeError, Message
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from cascade.v1 import events_pb2
from services.core import subjects

log = logging.getLogger(__name__)

EVENT_TYPES: dict[str, type[Message]] = {
    subjects.OUTCOMES: events_pb2.OutcomeEvent,
    subjects.FEEDBACK: events_pb2.FeedbackEvent,
}


async def read_events(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str | None,
    subject: str = subjects.OUTCOMES_ALL,
    batch: int = 256,
    idle_timeout_s: float = 1.0,
    follow: bool = False,
    since: datetime | None = None,
) -> AsyncGenerator[Message, None]:
    """Yield events not yet acknowledged by ``durable``, acknowledging each after it is yielded.

    Stops when no new event arrives within ``idle_timeout_s`` (unless ``follow``); a later call
    with the same durable name continues where this one stopped. ``durable=None`` reads the
    whole stream with a throw-away consumer. A message that is not a known event is skipped
    (and acknowledged), so one bad publisher cannot stall a consumer. ``since``: a new consumer
    starts at the first event stored at or after this time (an existing durable keeps its place).
    """
    config = None if since is None else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=idle_timeout_s)
            except (NatsTimeoutError, TimeoutError):
                if follow:
                    continue
                return
            for msg in msgs:
                event = _decode(msg.subject, msg.data)
                if event is not None:
                    yield event
                await msg.ack()
    finally:
        await sub.unsubscribe()


def _decode(subject: str, data: bytes) -> Message | None:
    kind = EVENT_TYPES.get(subject)
    if kind is None:
        return None
    try:
        return kind.FromString(data)
    except DecodeError:
        log.warning("skipping a malformed %s event (%d bytes)", subject, len(data))
        return None
