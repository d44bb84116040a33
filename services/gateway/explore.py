"""Exploration (``exploration``): a small share of requests teaches the router what it would not ask.

The router's own traffic only labels the tier it chose: a prompt routed to the large tier never gets
a small answer to judge. A chosen request (a hash of its id and ``seed`` below ``share``, so the
same id is always chosen or never, and tests are reproducible) is explored in one of two ways:

- ``shadow``: after the caller has its answer, the other end of ``router.tiers`` (the top tier for
  an answer from below it, the cheapest for an answer from the top) answers the same prompt in a
  background task; its attempt joins the outcome with purpose ``shadow`` and the outcome is
  published once it ends (answer, error or ``shadow_timeout_s``). It never delays nor fails the
  caller's request; :meth:`Exploration.close` waits for running shadows at shutdown.
- ``against``: the router's decision is inverted for this request (the cheapest tier for a routed
  large prompt, the top tier for a routed cheap one); the outcome's ``exploration`` says so.

Only policies ``cascade`` and ``route`` are explored (small and large are the caller's choice), and
not a request the tenant's budget kept off the large tier. What exploration spends is capped over
the last hour (``max_usd_per_hour``, ``max_share``), counted in memory by each gateway process in
one-minute buckets: budget.py's window keeps one entry per request, which at a busy gateway's rate
is millions of entries an hour, summed on every check; sixty buckets are bounded and cheap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from services.core.errors import Cancelled, CascadeError, DeadlineExceeded, InternalError
from services.core.settings import ExplorationSettings
from services.gateway.domain import Piece, Purpose, Reason, TierCall
from services.gateway.record import Attempt, RequestRecord
from services.gateway.requests import CascadeRequest

log = logging.getLogger(__name__)

SHADOW, AGAINST = "shadow", "against_decision"  # OutcomeEvent.exploration
_POLICIES = ("cascade", "route")
_BUCKET_S, _BUCKETS = 60.0, 60  # the caps' window: the last hour, by the minute


class Tiers(Protocol):
    def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]: ...


Publish = Callable[[RequestRecord], None]


@dataclass
class _Bucket:
    minute: int
    seen: int = 0
    explored: int = 0
    usd: float = 0.0


class _Window:
    """Requests seen and explored, and USD spent exploring, over the last hour (one-minute buckets)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock, self._buckets = clock, deque[_Bucket]()

    def _current(self) -> _Bucket:
        minute = int(self._clock() // _BUCKET_S)
        while self._buckets and self._buckets[0].minute <= minute - _BUCKETS:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1].minute != minute:
            self._buckets.append(_Bucket(minute))
        return self._buckets[-1]

    def add(self, *, explored: bool, usd: float) -> None:
        bucket = self._current()
        bucket.seen += 1
        bucket.explored += explored
        bucket.usd += usd

    def totals(self) -> tuple[int, int, float]:
        self._current()  # drops what is older than the hour
        b = self._buckets
        return sum(x.seen for x in b), sum(x.explored for x in b), sum(x.usd for x in b)


class Exploration:
    def __init__(
        self,
        settings: ExplorationSettings,
        *,
        ladder: tuple[str, ...],
        tiers: Tiers,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s, self._ladder, self._tiers = settings, ladder, tiers
        self._capped = settings.max_share is not None or settings.max_usd_per_hour is not None
        self._window = _Window(clock)
        self._shadows: set[asyncio.Task[None]] = set()

    def chosen(self, request_id: str) -> bool:
        """Whether this request id is in the explored share (the same answer for the same id and seed)."""
        if self._s.share <= 0 or len(self._ladder) < 2:
            return False
        digest = hashlib.sha256(f"{self._s.seed}\0{request_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self._s.share

    def _explore(self, request: CascadeRequest) -> bool:
        if request.policy not in _POLICIES or not self.chosen(request.request_id):
            return False
        cap = self._cap_reached()
        if cap:
            log.info("request %s not explored: %s", request.request_id, cap)
            return False
        return True

    def _cap_reached(self) -> str:
        if not self._capped:
            return ""
        seen, explored, usd = self._window.totals()
        s = self._s
        if s.max_usd_per_hour is not None and usd >= s.max_usd_per_hour:
            return f"exploration spent ${usd:.6f} of max_usd_per_hour ${s.max_usd_per_hour:g} in the last hour"
        # A share needs a request count: the first request of the hour is never refused by share alone.
        if s.max_share is not None and explored >= s.max_share * max(seen, 1):
            return f"{explored} of {seen} requests explored in the last hour (max_share {s.max_share:g})"
        return ""

    def route(self, request: CascadeRequest, record: RequestRecord, tier: str) -> str:
        """Mode against: the other end of the ladder for a chosen request, else ``tier``."""
        if self._s.mode != "against" or record.route.reason == Reason.ROUTER_FALLBACK or not self._explore(request):
            return tier
        other = self._ladder[-1] if tier == self._ladder[0] else self._ladder[0]
        record.exploration = AGAINST
        if request.policy == "cascade":  # the reason names the path taken; `exploration` says why
            record.route.reason = Reason.ROUTED_LARGE if other == self._ladder[-1] else Reason.ROUTED
        log.info("request %s explored against the router: %s instead of %s", request.request_id, other, tier)
        return other

    def finish(self, request: CascadeRequest, record: RequestRecord, *, publish: Publish, call: TierCall) -> None:
        """Publish the request's outcome: now, or (a chosen request, mode shadow) once its shadow ended."""
        tier = self._shadow_tier(request, record)
        if tier is None:
            self._count(record, explored=bool(record.exploration), usd=record.cost_usd() if record.exploration else 0)
            publish(record)
            return
        record.exploration = SHADOW
        task = asyncio.get_running_loop().create_task(self._shadow(record, tier, call, publish))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    def _shadow_tier(self, request: CascadeRequest, record: RequestRecord) -> str | None:
        if self._s.mode != "shadow" or record.error is not None or record.route.budget_limited:
            return None
        if not record.route.tier or not self._explore(request):
            return None
        top, bottom = self._ladder[-1], self._ladder[0]
        tier = bottom if record.route.tier == top else top
        if any(a.tier == tier and a.final is not None and a.error is None for a in record.attempts):
            return None  # that tier answered already (an escalation): nothing to learn
        if len(self._shadows) >= self._s.max_shadows_in_flight:
            log.info("request %s not explored: %d shadows running", request.request_id, len(self._shadows))
            return None
        return tier

    async def _shadow(self, record: RequestRecord, tier: str, call: TierCall, publish: Publish) -> None:
        attempt = Attempt(tier=tier, purpose=Purpose.SHADOW)
        try:
            async with asyncio.timeout(self._s.shadow_timeout_s):
                async for piece in self._tiers.stream(tier, call):
                    attempt.add(piece)
            if attempt.final is None:
                attempt.fail(InternalError(f"tier {tier} ended the shadow answer without a final piece"))
        except TimeoutError:
            attempt.fail(DeadlineExceeded(f"no shadow answer within {self._s.shadow_timeout_s:g}s"))
        except CascadeError as exc:
            attempt.fail(exc)
        except asyncio.CancelledError:
            attempt.fail(Cancelled("the gateway stopped before the shadow answered"))
            raise
        except Exception as exc:  # a bug here must not lose the outcome
            log.exception("request %s: shadow on %s failed", record.request.request_id, tier)
            attempt.fail(InternalError(f"shadow failed: {exc!r}"))
        finally:
            record.attempts.append(attempt)
            self._count(record, explored=True, usd=attempt.cost_usd(record.prices[tier]))
            try:
                publish(record)
            except Exception:
                log.exception("request %s: the outcome after its shadow was not recorded", record.request.request_id)

    def _count(self, record: RequestRecord, *, explored: bool, usd: float) -> None:
        if self._capped and record.request.policy in _POLICIES:
            self._window.add(explored=explored, usd=usd)

    @property
    def running(self) -> int:
        return len(self._shadows)

    async def close(self, *, timeout_s: float) -> None:
        """Let running shadows finish for up to ``timeout_s``, then cancel the rest; each publishes its outcome."""
        if not self._shadows:
            return
        log.info("waiting up to %gs for %d shadow answers", timeout_s, len(self._shadows))
        _, late = await asyncio.wait(set(self._shadows), timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
