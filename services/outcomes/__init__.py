"""Outcome events on JetStream: the stream, the publisher the gateway uses, and a durable reader."""

from services.outcomes.publisher import OutcomePublisher, outcome_id
from services.outcomes.reader import read_events
from services.outcomes.seen import SeenRequests, ensure_seen_stream
from services.outcomes.spool import Spool, SpooledEvent
from services.outcomes.stream import ensure_stream

__all__ = [
    "OutcomePublisher",
    "SeenRequests",
    "Spool",
    "SpooledEvent",
    "ensure_seen_stream",
    "ensure_stream",
    "outcome_id",
    "read_events",
]
