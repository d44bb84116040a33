"""NATS edge of a tier: TierRequest in, TierAccept back, then TokenChunks (chunks.py) to the caller's subject."""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import Service
from opentelemetry.trace import Span

from cascade.v1 import events_pb2
from services.core import metrics, subjects
from services.core.errors import CascadeError, DeadlineExceeded, ErrorCode, InternalError, InvalidRequest
from services.core.liveness import announce, withdraw
from services.core.logs import REQUEST_ID
from services.core.nats import drain_subscription
from services.core.payloads import DEFAULT_MAX_PAYLOAD, check_size, decode, is_inbox
from services.core.settings import TierSettings
from services.core.telemetry import extract_context, span
from services.core.wire import error_info
from services.tier.accounting import count_final
from services.tier.admission import admit, seconds_left
from services.tier.backends import Generation, Message, TierBackend, create_backend
from services.tier.chunks import ChunkSender


def generation_from(request: events_pb2.TierRequest, timeout_s: float) -> Generation:
    return Generation(
        request_id=request.request_id,
        messages=[Message(role=m.role, content=m.content) for m in request.messages],
        max_tokens=request.max_tokens,
        temperature=request.temperature if request.HasField("temperature") else None,
        stop=tuple(request.stop),
        want_logprobs=request.want_logprobs,
        timeout_s=timeout_s,
        n=max(request.n, 1),
        whole=request.hold_first_token,  # a unary caller: the answer may come in one response
    )


class TierWorker:
    def __init__(
        self,
        *,
        nc: NatsClient,
        tier: str,
        settings: TierSettings,
        backend: TierBackend | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._nc, self.tier, self._settings = nc, tier, settings
        self._max_payload = max_payload_bytes
        # Each tier logs under its own name, so a log filter or a JSON query can pick one tier out.
        self._log = logging.getLogger(f"cascade.tier.{tier}")
        self.backend = backend or create_backend(settings)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._work: Subscription | None = None
        self._cancels: Subscription | None = None
        self._live: Service | None = None

    async def start(self) -> None:
        self._cancels = await self._nc.subscribe(subjects.CANCEL, cb=self.handle_cancel)
        self._work = await self._nc.subscribe(
            subjects.tier_subject(self.tier), queue=subjects.tier_queue(self.tier), cb=self.handle_request
        )
        b = self.backend
        self._live = await announce(
            self._nc, subjects.tier_service(self.tier), description=f"tier {self.tier}", backend=b.kind, model=b.model
        )
        self._log.info("tier %s serving through %s backend (model %s)", self.tier, b.kind, b.model)

    async def stop(self, *, grace_s: float = 30.0) -> None:
        """Stop taking requests, answer those already delivered, let those in flight finish (up to ``grace_s``).

        Cancels are listened to until the last request in flight is done: a caller that goes away
        meanwhile still stops its work.
        """
        if self._live is not None:
            await withdraw(self._nc, self._live)
            self._live = None
        if self._work is not None:
            await drain_subscription(self._nc, self._work, what=f"tier {self.tier}'s requests", timeout_s=grace_s)
            self._work = None
        if self._tasks:
            self._log.info("tier %s waiting for %d requests in flight", self.tier, len(self._tasks))
            _, pending = await asyncio.wait(list(self._tasks.values()), timeout=grace_s)
            for task in pending:
                task.cancel()
        if self._cancels is not None:
            await drain_subscription(self._nc, self._cancels, what=f"tier {self.tier}'s cancels", timeout_s=grace_s)
            self._cancels = None
        await self.backend.aclose()

    async def handle_request(self, msg: Msg) -> None:
        """The tier subject's callback: a TierAccept (or a refusal naming why) to every request with a reply."""
        if not msg.reply:  # nobody to accept to or refuse to: a TierRequest is always a NATS request
            self._log.warning("tier %s dropped a message without a reply subject (%d bytes)", self.tier, len(msg.data))
            return
        try:
            request = self._admit(msg.data)
        except CascadeError as exc:
            self._log.warning("tier %s refused a request: %s", self.tier, exc.message)
            await msg.respond(events_pb2.TierAccept(tier=self.tier, error=error_info(exc)).SerializeToString())
            return
        accept = events_pb2.TierAccept(
            request_id=request.request_id, tier=self.tier, backend=self.backend.kind, model=self.backend.model
        )
        await msg.respond(accept.SerializeToString())
        task = asyncio.create_task(self._serve(request, msg.headers))
        # By attempt (its chunk subject), not request id: one request asks several tiers, and the cancel
        # of one attempt (a second opinion no longer needed) must not stop another (its escalation).
        attempt = request.chunk_subject
        self._tasks[attempt] = task
        task.add_done_callback(lambda _: self._tasks.pop(attempt, None))

    def _admit(self, data: bytes) -> events_pb2.TierRequest:
        request = decode(events_pb2.TierRequest, data, limit=self._max_payload)
        if not request.request_id or not request.chunk_subject or not request.messages:
            raise InvalidRequest("TierRequest needs request_id, chunk_subject and messages")
        if not is_inbox(request.chunk_subject):
            raise InvalidRequest(f"TierRequest.chunk_subject {request.chunk_subject[:64]!r} is not an _INBOX subject")
        if request.chunk_subject in self._tasks:  # an attempt is named by its chunk subject (see handle_request)
            raise InvalidRequest(f"attempt {request.chunk_subject[:128]!r} is already being served by tier {self.tier}")
        running, limit = len(self._tasks), self._settings.max_concurrency
        admit(self.tier, samples=request.n, running=running, limit=limit, deadline_unix_ms=request.deadline_unix_ms)
        return request

    async def handle_cancel(self, msg: Msg) -> None:
        """The CANCEL subscription's callback: the payload names an attempt (its chunk subject)."""
        try:
            check_size("a cancel", msg.data, limit=1024)  # chunk subjects are short inbox subjects
        except CascadeError as exc:
            self._log.warning("tier %s ignored a cancel: %s", self.tier, exc.message)
            return
        task = self._tasks.get(msg.data.decode(errors="replace"))
        if task:
            task.cancel()

    async def _serve(self, request: events_pb2.TierRequest, headers: dict[str, str] | None) -> None:
        REQUEST_ID.set(request.request_id)  # this task's log records name the request
        sender = ChunkSender(self._nc, request, self.tier)
        timeout_s = seconds_left(request.deadline_unix_ms)
        started, status = time.perf_counter(), ErrorCode.INTERNAL.name
        span_name, trace_context = f"tier.{self.tier}", extract_context(headers)
        with span(__name__, span_name, context=trace_context) as current:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._stream(sender, generation_from(request, timeout_s), current)
                status = "OK"
            except TimeoutError:
                status = ErrorCode.DEADLINE_EXCEEDED.name
                await sender.fail(DeadlineExceeded(f"tier {self.tier} ran past the deadline"))
            except CascadeError as exc:
                status = exc.code.name
                self._log.warning("tier %s request %s failed: %s", self.tier, request.request_id, exc.message)
                await sender.fail(exc)
            except asyncio.CancelledError:
                status = ErrorCode.CANCELLED.name
                self._log.info("tier %s request %s cancelled by the caller", self.tier, request.request_id)
            except Exception:
                self._log.exception("tier %s request %s: unexpected failure", self.tier, request.request_id)
                await sender.fail(InternalError(f"tier {self.tier} failed unexpectedly"))
            finally:
                labels = {"tier": self.tier, "status": status}
                metrics.TIER_DURATION.record(time.perf_counter() - started, labels)
                sender.close()

    async def _stream(self, sender: ChunkSender, generation: Generation, current: Span) -> None:
        async for delta in self.backend.stream(generation):
            await sender.delta(delta)
            if delta.finish_reason is not None:
                count_final(self.tier, self.backend.model, delta, current)
                return
        raise InternalError(f"tier {self.tier} backend ended without a finish reason")
