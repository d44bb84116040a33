"""Reading outcome events with a durable JetStream pull consumer (explicit acks)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from datetime import datetime

from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.errors import CascadeError, InvalidRequest
from services.core.payloads import DEFAULT_MAX_PAYLOAD, decode

log = logging.getLogger(__name__)

EVENT_TYPES: dict[str, type[Message]] = {
    subjects.OUTCOMES: events_pb2.OutcomeEvent,
    subjects.FEEDBACK: events_pb2.FeedbackEvent,
}

# A held message (``hold=``) is redelivered only after this long without an ack: long enough for a
# fit to finish, so a crashed reader's events come back to the next read (after this wait).
HOLD_ACK_WAIT_S = 3600.0


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
    hold: list[Msg] | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
) -> AsyncGenerator[Message, None]:
    """Yield events not yet acknowledged by ``durable``, acknowledging each after it is yielded.

    Stops when no new event arrives within ``idle_timeout_s`` (unless ``follow``); a later call
    with the same durable name continues where this one stopped. ``durable=None`` reads the
    whole stream with a throw-away consumer. A message that is not a known event is skipped
    (and acknowledged), so one bad publisher cannot stall a consumer; so is one over
    ``max_payload_bytes`` (nats.max_payload_bytes). ``since``: a new consumer
    starts at the first event stored at or after this time (an existing durable keeps its place).

    ``hold``: acknowledge nothing; append every message here instead, for the caller to ack once it has
    used the events (training acks after a successful fit) or nak to give them back at once. A consumer
    created for this allows any number of unacknowledged messages; an existing one that allows fewer
    than were read raises :class:`InvalidRequest` rather than silently stopping at its limit.
    """
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=_config(since, hold=hold is not None))
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=idle_timeout_s)
            except (NatsTimeoutError, TimeoutError):
                if follow:
                    continue
                if hold is not None:
                    await _check_not_capped(sub, durable=durable, held=len(hold))
                return
            for msg in msgs:
                event = decode_event(msg.subject, msg.data, limit=max_payload_bytes)
                if event is not None:
                    yield event
                if hold is None:
                    await msg.ack()
                else:
                    hold.append(msg)
    finally:
        await sub.unsubscribe()


def _config(since: datetime | None, *, hold: bool) -> ConsumerConfig | None:
    if since is None and not hold:
        return None
    config = ConsumerConfig()
    if since is not None:
        config.deliver_policy, config.opt_start_time = DeliverPolicy.BY_START_TIME, since
    if hold:
        config.max_ack_pending, config.ack_wait = -1, HOLD_ACK_WAIT_S  # -1: no limit
    return config


async def _check_not_capped(sub: JetStreamContext.PullSubscription, *, durable: str | None, held: int) -> None:
    info = await sub.consumer_info()
    cap = info.config.max_ack_pending or 0
    if cap > 0 and held >= cap:
        raise InvalidRequest(
            f"consumer {durable!r} allows only {cap} unacknowledged events and more are waiting: it was "
            "created by another reader (e.g. cascade outcomes tail); use a new durable name for training"
        )


def decode_event(subject: str, data: bytes, *, limit: int = DEFAULT_MAX_PAYLOAD) -> Message | None:
    """The event stored on ``subject``; None (logged) for an unknown subject or an unreadable payload."""
    kind = EVENT_TYPES.get(subject)
    if kind is None:
        return None
    try:
        return decode(kind, data, limit=limit)
    except CascadeError as exc:
        log.warning("skipping an event on %s: %s", subject, exc.message)
        return None
