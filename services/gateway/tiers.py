"""The gateway's tiers: each one answered over NATS by its workers, or by its backend in this process.

``tiers.<name>.mode: embedded`` calls the tier's backend (an OpenAI-compatible server, a replay file)
from the gateway itself: no TierRequest, no chunk messages, no worker process wake-up per request.
That was most of what a routed request cost on two cores (bench/overhead: the tier worker ~0.7 ms of
CPU per request, nats-server and the gateway's NATS reads and writes most of the rest). What stays
the same: the backend, its concurrency limit (``max_concurrency``, per gateway), its deadline, its
metrics and span, and the errors the cascade sees. What a worker gives and this does not: scaling
the tier's client apart from the gateway, and a tier that fails without the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import cast

from services.core import metrics
from services.core.errors import CascadeError, ErrorCode, InternalError
from services.core.settings import TierSettings
from services.core.telemetry import span
from services.gateway.cascade import Tiers
from services.gateway.domain import Piece, TierCall, Usage
from services.tier.accounting import count_final
from services.tier.admission import admit, seconds_left
from services.tier.backends import Delta, Generation, TierBackend, create_backend

log = logging.getLogger(__name__)


class EmbeddedTier:
    """One tier's backend, called in this process; yields the answer as the cascade's pieces."""

    def __init__(self, name: str, settings: TierSettings, backend: TierBackend | None = None) -> None:
        self.name, self._limit = name, settings.max_concurrency
        self.backend = backend or create_backend(settings)
        self._running = 0

    async def stream(self, call: TierCall) -> AsyncIterator[Piece]:
        # The refusals a worker sends in its TierAccept, before anything is started.
        admit(
            self.name, samples=call.n, running=self._running, limit=self._limit, deadline_unix_ms=call.deadline_unix_ms
        )
        timeout_s = seconds_left(call.deadline_unix_ms)
        self._running += 1
        started, status = time.perf_counter(), ErrorCode.INTERNAL.name
        # Unary callers see nothing before the end: their answer is gathered into one piece, as the
        # worker gathers it into one chunk (hold_first_token). A stream gets every delta as it comes.
        gather = call.hold_first_token
        texts: list[str] = []
        logprobs: list[float] = []
        with span(__name__, f"tier.{self.name}") as current:
            try:
                async with contextlib.aclosing(_generator(self.backend.stream(_generation(call, timeout_s)))) as deltas:
                    async for delta in deltas:
                        if delta.finish_reason is not None:
                            count_final(self.name, self.backend.model, delta, current)
                            status = "OK"
                            yield self._final(delta, "".join(texts), logprobs)
                            return
                        if gather:
                            texts.append(delta.text)
                            logprobs.extend(delta.token_logprobs)
                        else:
                            yield Piece(text=delta.text, logprobs=tuple(delta.token_logprobs))
                raise InternalError(f"tier {self.name} backend ended without a finish reason")
            except CascadeError as exc:
                status = exc.code.name
                log.warning("tier %s request %s failed: %s", self.name, call.request_id, exc.message)
                raise
            except (GeneratorExit, asyncio.CancelledError):  # the cascade stopped listening (or the caller)
                status = ErrorCode.CANCELLED.name
                raise
            except Exception as exc:
                log.exception("tier %s request %s: unexpected failure", self.name, call.request_id)
                raise InternalError(f"tier {self.name} failed unexpectedly") from exc
            finally:
                self._running -= 1
                metrics.TIER_DURATION.record(time.perf_counter() - started, {"tier": self.name, "status": status})

    def _final(self, d: Delta, gathered: str, logprobs: list[float]) -> Piece:
        return Piece(
            text=gathered + d.text,
            logprobs=(*logprobs, *d.token_logprobs),
            final=True,
            finish_reason=d.finish_reason or "stop",
            usage=Usage(
                input_tokens=d.input_tokens or 0, output_tokens=d.output_tokens or 0, estimated=d.usage_estimated
            ),
            replay_score=d.replay_score,
            samples=tuple(s.text for s in d.samples),
            backend=self.backend.kind,
            model=self.backend.model,
        )


class GatewayTiers:
    """The cascade's tiers: embedded ones answered here, the others over NATS by ``remote``."""

    def __init__(self, remote: Tiers, embedded: Mapping[str, EmbeddedTier]) -> None:
        self._remote, self.embedded = remote, dict(embedded)

    @classmethod
    def from_settings(cls, remote: Tiers, tiers: Mapping[str, TierSettings]) -> GatewayTiers:
        return cls(remote, {name: EmbeddedTier(name, t) for name, t in tiers.items() if t.mode == "embedded"})

    def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]:
        local = self.embedded.get(tier)
        return local.stream(call) if local is not None else self._remote.stream(tier, call)

    async def aclose(self) -> None:
        for tier in self.embedded.values():
            await tier.backend.aclose()


def _generator(deltas: AsyncIterator[Delta]) -> AsyncGenerator[Delta, None]:
    # Backends' streams are async generators (TierBackend types them as iterators): closed when we stop.
    return cast(AsyncGenerator[Delta, None], deltas)


def _generation(call: TierCall, timeout_s: float) -> Generation:
    return Generation(
        request_id=call.request_id,
        messages=call.messages,
        max_tokens=call.max_tokens,
        temperature=call.temperature,
        stop=call.stop,
        want_logprobs=call.want_logprobs,
        timeout_s=timeout_s,
        n=max(call.n, 1),
        whole=call.hold_first_token,  # a unary caller: the answer may come in one response
    )
