"""Publishing outcome events without slowing requests down, and without losing them.

The gateway hands each event to :meth:`OutcomePublisher.submit`, which appends it to the local
journal (:mod:`services.outcomes.spool`) and returns: no request waits for NATS. A background task
publishes the journal's events, oldest first, to JetStream and marks each done once the stream has
acknowledged it; while JetStream is unreachable they wait in the journal and the task retries.
Each event carries a NATS message id, so a retry after a lost acknowledgement, or a republish
by the next gateway after a crash, is stored once (within the stream's duplicate window).
On shutdown, :meth:`close` publishes what it can; the rest stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from services.core.errors import NatsUnavailable, Unavailable
from services.core.nats import nats_down
from services.core.settings import OutcomeSettings
from services.outcomes.spool import Spool, SpooledEvent
from services.outcomes.stream import ensure_stream

log = logging.getLogger(__name__)


class NoStream(Unavailable):
    """NATS is up but no stream stores the subject (e.g. nats-server restarted on empty storage)."""


def outcome_id(request_id: str) -> str:
    """The message id of a request's outcome event: JetStream stores one per id (de-duplication)."""
    return f"outcome:{request_id}"


class OutcomePublisher:
    def __init__(
        self,
        nc: NatsClient,
        *,
        spool: Spool,
        stream: OutcomeSettings | None = None,
        timeout_s: float = 5.0,
        max_backoff_s: float = 5.0,
        window: int = 64,
    ) -> None:
        """``stream``: the stream to create again when it has gone missing (None: wait for someone else).

        ``window``: publishes in flight at once.
        """
        self._window = window
        self._nc = nc
        self._stream = stream
        self._js = nc.jetstream()
        self.spool = spool
        self._timeout_s = timeout_s
        self._max_backoff_s = max_backoff_s
        self._empty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Message ids submitted here and not yet acknowledged (the seen-id check reads it: is_pending).
        self._pending: Counter[str] = Counter()

    def start(self) -> None:
        """Open the spool (events an earlier gateway left are published first) and start publishing."""
        self.spool.open()
        self._task = asyncio.create_task(self._run())

    def submit(self, subject: str, msg_id: str, payload: bytes) -> None:
        """Spool the event for publishing; never blocks and never raises (a full spool logs and counts)."""
        if self.spool.submit(subject, msg_id, payload):
            self._empty.clear()
            self._pending[msg_id] += 1

    def settled(self) -> None:
        """Make sure every event submitted so far survives this process (Spool.settled: written, not
        waiting for JetStream)."""
        self.spool.settled()

    def hold(self, subject: str, msg_id: str, payload: bytes) -> SpooledEvent | None:
        """Spool an event that only the next gateway publishes, if this one dies before ``release`` (Spool.hold)."""
        return self.spool.hold(subject, msg_id, payload)

    def release(self, handle: SpooledEvent) -> None:
        self.spool.release(handle)

    def is_pending(self, msg_id: str) -> bool:
        """True while an event with this message id, submitted here, waits for the stream's acknowledgement."""
        return self._pending[msg_id] > 0

    async def publish_now(self, subject: str, msg_id: str, payload: bytes) -> bool:
        """Publish and wait for the stream's acknowledgement; False if it was a duplicate.

        Raises Unavailable naming the cause: the NATS connection, the stream, or its silence.
        """
        if down := nats_down(self._nc, doing="store the event in JetStream"):
            raise down
        try:
            ack = await self._js.publish(subject, payload, timeout=self._timeout_s, headers={"Nats-Msg-Id": msg_id})
        except NoStreamResponseError:
            raise NoStream(f"JetStream did not store the event: no stream is listening on {subject}") from None
        except APIError as exc:
            raise Unavailable(f"JetStream refused the event: {exc}") from None
        except (NatsError, TimeoutError) as exc:
            if down := nats_down(self._nc, doing="store the event in JetStream"):
                raise down from None
            raise Unavailable(f"JetStream did not acknowledge the event within {self._timeout_s}s ({exc!r})") from None
        return not ack.duplicate

    def _acknowledged(self, msg_id: str) -> None:
        count = self._pending.get(msg_id, 0)  # absent: an event an earlier gateway left in the spool
        if count > 1:
            self._pending[msg_id] = count - 1
        else:
            self._pending.pop(msg_id, None)

    @property
    def pending(self) -> int:
        """Events spooled and not yet acknowledged by JetStream."""
        return self.spool.pending

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Publish what is spooled (up to ``timeout_s``), then stop; what is left stays in the spool."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._empty.wait(), timeout_s)
            except TimeoutError:
                log.error("%d outcome events not acknowledged at shutdown", self.spool.pending)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.spool.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            events = self.spool.peek(self._window)
            if not events:
                if not self.spool.pending:
                    self._empty.set()
                self.spool.ready.clear()
                await self.spool.ready.wait()
                continue
            error: Unavailable | None = None
            for event, result in zip(events, await self._publish_batch(events), strict=True):
                if isinstance(result, Unavailable):
                    error = error or result
                elif isinstance(result, Exception):  # a bug must not stop publishing: log it, retry later
                    log.error("publishing outcome %s failed", event.msg_id, exc_info=result)
                    error = error or Unavailable(f"unexpected {result!r}")
                else:
                    self.spool.ack(event)
                    self._acknowledged(event.msg_id)
            if error is None:
                if failures:
                    log.info("JetStream stores outcome events again (after %d failed tries)", failures)
                    failures = 0
                continue
            if not failures:
                log.warning("outcome events wait in the spool until JetStream stores them: %s", error.message)
            failures += 1
            if isinstance(error, NoStream) and self._stream is not None:
                with contextlib.suppress(NatsError, TimeoutError):
                    await ensure_stream(self._js, self._stream)
            # Disconnected: nothing is sent, so look again soon (reconnects take ~0.5 s); otherwise back off.
            delay = 0.1 if isinstance(error, NatsUnavailable) else min(0.05 * 2**failures, self._max_backoff_s)
            await asyncio.sleep(delay)

    async def _publish_batch(self, events: list[SpooledEvent]) -> list[bool | Exception]:
        """Publish every event, then wait once for all acknowledgements (True: stored, or a duplicate).

        Why not ``publish_now`` per event in a gather: a task and a timer per event, and the
        acknowledgements were a visible share of the gateway's CPU under bench/overhead.
        """
        if down := nats_down(self._nc, doing="store the event in JetStream"):
            return [down] * len(events)
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for e in events:
                futures.append(await self._js.publish_async(e.subject, e.payload, headers={"Nats-Msg-Id": e.msg_id}))
        except (NatsError, TimeoutError) as exc:
            for f in futures:
                f.cancel()
            unsent = nats_down(self._nc, doing="store the event in JetStream") or Unavailable(
                f"cannot publish: {exc!r}"
            )
            return [unsent] * len(events)
        late: set[asyncio.Future[PubAck]] = set(futures)
        try:
            _, late = await asyncio.wait(futures, timeout=self._timeout_s)
        finally:  # also when close() cancels us: no acknowledgement is waited for, or left unread
            for f in late:
                f.cancel()
        return [self._result(e.subject, f, late) for e, f in zip(events, futures, strict=True)]

    def _result(
        self, subject: str, future: asyncio.Future[PubAck], late: set[asyncio.Future[PubAck]]
    ) -> bool | Exception:
        if future in late:
            return nats_down(self._nc, doing="store the event in JetStream") or Unavailable(
                f"JetStream did not acknowledge the event within {self._timeout_s}s"
            )
        exc = future.exception()
        if exc is None:
            return True
        if isinstance(exc, NoStreamResponseError):
            return NoStream(f"JetStream did not store the event: no stream is listening on {subject}")
        if isinstance(exc, APIError):
            return Unavailable(f"JetStream refused the event: {exc}")
        return exc if isinstance(exc, Exception) else Unavailable(repr(exc))
