"""Publishing outcome events without slowing requests down, and without losing them.

The gateway hands each event to :meth:`OutcomePublisher.submit`, which returns at once;
a background task publishes to JetStream and retries until the stream acknowledges.
Each event carries a NATS message id, so a retry after a lost acknowledgement is
stored once. On shutdown, :meth:`close` waits for the queue to empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from services.core.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    subject: str
    msg_id: str
    payload: bytes


class OutcomePublisher:
    def __init__(self, js: JetStreamContext, *, timeout_s: float = 5.0, max_backoff_s: float = 5.0) -> None:
        self._js = js
        self._timeout_s = timeout_s
        self._max_backoff_s = max_backoff_s
        self._queue: asyncio.Queue[PendingEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Message ids submitted but not yet acknowledged (a Counter: the same id may be queued twice).
        self._pending: Counter[str] = Counter()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def submit(self, subject: str, msg_id: str, payload: bytes) -> None:
        self._pending[msg_id] += 1
        self._queue.put_nowait(PendingEvent(subject, msg_id, payload))

    def is_pending(self, msg_id: str) -> bool:
        """True while an event with this message id waits for the stream's acknowledgement."""
        return self._pending[msg_id] > 0

    async def publish_now(self, subject: str, msg_id: str, payload: bytes) -> bool:
        """Publish and wait for the stream's acknowledgement; False if it was a duplicate."""
        try:
            ack = await self._js.publish(subject, payload, timeout=self._timeout_s, headers={"Nats-Msg-Id": msg_id})
        except (NatsError, TimeoutError) as exc:
            raise Unavailable(f"outcome stream did not acknowledge: {exc!r}") from exc
        return not ack.duplicate

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Publish what is queued (up to ``timeout_s``), then stop."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            lost = [self._queue.get_nowait().msg_id for _ in range(self._queue.qsize())]
            log.error("%d outcome events not acknowledged at shutdown: %s", len(lost), lost)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            await self._publish_with_retry(event)
            self._pending[event.msg_id] -= 1
            if not self._pending[event.msg_id]:
                del self._pending[event.msg_id]
            self._queue.task_done()

    async def _publish_with_retry(self, event: PendingEvent) -> None:
        backoff = 0.05
        while True:
            try:
                await self.publish_now(event.subject, event.msg_id, event.payload)
                return
            except Unavailable as exc:
                log.warning("retrying outcome %s in %.2fs: %s", event.msg_id, backoff, exc.message)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
