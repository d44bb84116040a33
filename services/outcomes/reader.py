"""Reading outcome events with a durable JetStream pull consumer (explicit acks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf.message import Message
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from cascade.v1 import events_pb2
from services.core import subjects

EVENT_TYPES: dict[str, type[Message]] = {
    subjects.OUTCOMES: events_pb2.OutcomeEvent,
    subjects.FEEDBACK: events_pb2.FeedbackEvent,
}


async def read_events(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    subject: str = subjects.OUTCOMES_ALL,
    batch: int = 256,
    idle_timeout_s: float = 1.0,
) -> AsyncIterator[Message]:
    """Yield events not yet acknowledged by ``durable``, acknowledging each after it is yielded.

    Stops when no new event arrives within ``idle_timeout_s``; a later call with the
    same durable name continues where this one stopped.
    """
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream)
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=idle_timeout_s)
            except (NatsTimeoutError, TimeoutError):
                return
            for msg in msgs:
                kind = EVENT_TYPES.get(msg.subject)
                if kind is not None:
                    yield kind.FromString(msg.data)
                await msg.ack()
    finally:
        await sub.unsubscribe()
