"""Which request ids the system has seen, so Feedback for an unknown id can be refused.

Every gateway copy records each request id it serves in a JetStream stream (``outcomes.seen_stream``):
one empty message per id on ``cascade.requests.seen.<hash of the id>``, at most one per subject, kept
for ``outcomes.feedback_window_s``. A Feedback call on any copy then looks the id up by subject.

Why a stream of its own and not the outcome stream: outcome events share one subject
(``cascade.outcomes.request``, a public contract), so an id cannot be looked up there without
changing it; and this stream's retention is the feedback window, not the outcomes' 30 days.
Why not a KV bucket: nats.py's buckets discard *new* writes when full, which would stall the
outcome publisher behind a refused id; this stream drops the oldest ids instead.

The id is recorded when the request starts, through the outcome publisher (asynchronous, retried),
so it is stored long before a caller can send feedback for the answer. Until JetStream has
acknowledged it, the serving gateway knows the id from the publisher's pending set, so feedback
that overtakes the write is not refused.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError as JsNotFoundError

from services.core import subjects
from services.core.errors import Unavailable
from services.core.nats import nats_down
from services.core.settings import OutcomeSettings
from services.outcomes.publisher import OutcomePublisher
from services.outcomes.stream import add_or_update_stream


def seen_subject(request_id: str) -> str:
    """The subject of one request id: a hash, since ids may hold '.' and ':' (not subject-safe)."""
    return subjects.SEEN_PREFIX + hashlib.sha256(request_id.encode()).hexdigest()[:32]


def seen_stream_config(settings: OutcomeSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.seen_stream,
        subjects=[subjects.SEEN_ALL],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_msgs_per_subject=1,
        max_age=settings.feedback_window_s,
        max_bytes=settings.seen_max_bytes,
        # JetStream wants the de-duplication window within max_age.
        duplicate_window=min(120.0, settings.feedback_window_s),
    )


async def ensure_seen_stream(js: JetStreamContext, settings: OutcomeSettings) -> None:
    await add_or_update_stream(js, seen_stream_config(settings))


class SeenRequests:
    """Records request ids as they start and answers whether an id was seen within the window."""

    def __init__(self, nc: NatsClient, *, publisher: OutcomePublisher, settings: OutcomeSettings) -> None:
        self._nc, self._js, self._publisher, self._settings = nc, nc.jetstream(), publisher, settings

    def record(self, request_id: str) -> None:
        """Submitted after the request's provisional outcome is held: the spool writes both before it
        publishes the id, so a stored id always has an outcome to come."""
        self._publisher.submit(seen_subject(request_id), _msg_id(request_id), b"")

    async def seen(self, request_id: str) -> bool:
        """True when ``request_id`` started within the feedback window (on any gateway copy)."""
        if self._publisher.is_pending(_msg_id(request_id)):
            return True
        if down := nats_down(self._nc, doing="look up the request id"):
            raise down
        try:
            # Not a direct get: that may be answered by a replica that lags the write.
            msg = await self._js.get_msg(self._settings.seen_stream, subject=seen_subject(request_id))
        except JsNotFoundError:
            return False
        except (NatsError, TimeoutError) as exc:
            raise nats_down(self._nc, doing="look up the request id") or Unavailable(
                f"cannot look up the request id: {exc!r}"
            ) from exc
        # The stream expires ids itself; this check makes the window exact between its sweeps.
        return msg.time is None or (datetime.now(UTC) - msg.time).total_seconds() <= self._settings.feedback_window_s


def _msg_id(request_id: str) -> str:
    return f"seen:{request_id}"
