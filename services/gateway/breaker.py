"""A circuit breaker per tier: stop calling a tier that keeps failing, try it again after a cool-down.

CLOSED: calls go through; ``failures`` failures in a row open the breaker. OPEN: for ``open_s``
seconds every call is refused at once (TierDown), so callers do not each wait out the tier's
admission retries and timeouts. HALF_OPEN (the cool-down is over): one call, the probe, goes
through; its success closes the breaker, its failure opens it for another ``open_s``. Only failures
that say the tier is down count (Unavailable, Internal); a NATS outage is not the tier's fault, and
a refused request (invalid, unknown prompt, overload) or a caller's deadline says nothing about it.

One breaker per tier per gateway process: each gateway copy learns on its own traffic.
The clock is injected so the state machine is tested without sleeping.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Protocol

from services.core.errors import CascadeError, InternalError, NatsUnavailable, TierUnavailable, Unavailable
from services.core.settings import BreakerSettings
from services.gateway.domain import Piece, TierCall

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class TierDown(TierUnavailable):
    """The tier's circuit breaker is open: the call was refused without asking the tier (UNAVAILABLE)."""


class Breaker:
    def __init__(self, tier: str, *, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.tier, self._threshold, self._open_s, self._clock = tier, failures, open_s, clock
        self._failures = 0
        self._opened_at: float | None = None
        # The request holding the half-open probe, and since when: a probe never reported (its
        # request took another path) is given to another request after open_s.
        self._probe: str | None = None
        self._probe_since = 0.0

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        return State.OPEN if self._clock() - self._opened_at < self._open_s else State.HALF_OPEN

    def enter(self, request_id: str) -> bool:
        """Whether ``request_id`` may call the tier now; in HALF_OPEN the first to ask holds the probe.

        Asking again for the same request id gives the same answer, so the cascade can decide on a
        tier and the tier client check again without the request losing its own probe.
        """
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            return False
        now = self._clock()
        if self._probe in (None, request_id) or now - self._probe_since >= self._open_s:
            self._probe, self._probe_since = request_id, now
            return True
        return False

    def succeeded(self) -> None:
        if self._opened_at is not None:
            log.warning("tier %s answers again: circuit breaker closed", self.tier)
        self._failures, self._opened_at, self._probe = 0, None, None

    def failed(self, request_id: str) -> None:
        state = self.state
        if state is State.HALF_OPEN and self._probe == request_id:  # the probe failed: another cool-down
            self._opened_at, self._probe = self._clock(), None
        elif state is State.CLOSED:
            self._failures += 1
            if self._threshold and self._failures >= self._threshold:
                self._opened_at = self._clock()
                log.warning(
                    "tier %s failed %d times in a row: breaker open for %gs", self.tier, self._failures, self._open_s
                )

    def released(self, request_id: str) -> None:
        """The request ended without a verdict on the tier (cancelled, refused): its probe is free again."""
        if self._probe == request_id:
            self._probe = None

    def retry_in_s(self) -> float:
        return 0.0 if self._opened_at is None else max(0.0, self._opened_at + self._open_s - self._clock())

    def error(self) -> TierDown:
        return TierDown(
            f"tier {self.tier!r} is down: its circuit breaker opened after {self._threshold} failures in a row "
            f"(next try in {self.retry_in_s():.1f}s)"
        )


def counts_against_tier(exc: CascadeError) -> bool:
    """Whether a failed call says the tier is down (see the module docstring)."""
    return isinstance(exc, Unavailable | InternalError) and not isinstance(exc, NatsUnavailable | TierDown)


class Breakers:
    """One breaker per tier name."""

    def __init__(
        self, settings: BreakerSettings, tiers: Iterable[str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._by_tier = {t: Breaker(t, failures=settings.failures, open_s=settings.open_s, clock=clock) for t in tiers}

    def __getitem__(self, tier: str) -> Breaker:
        return self._by_tier[tier]

    def enter(self, tier: str, request_id: str) -> bool:
        breaker = self._by_tier.get(tier)
        return breaker is None or breaker.enter(request_id)


class _Tiers(Protocol):
    def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]: ...


class BreakerTiers:
    """The tier clients behind their breakers: a refused call raises TierDown, each call's end is counted."""

    def __init__(self, tiers: _Tiers, breakers: Breakers) -> None:
        self._tiers, self.breakers = tiers, breakers

    async def stream(self, tier: str, call: TierCall) -> AsyncIterator[Piece]:
        breaker = self.breakers[tier]
        if not breaker.enter(call.request_id):
            raise breaker.error()
        verdict = False
        try:
            async for piece in self._tiers.stream(tier, call):
                if piece.final:
                    breaker.succeeded()
                    verdict = True
                yield piece
        except CascadeError as exc:
            if counts_against_tier(exc):
                breaker.failed(call.request_id)
                verdict = True
            raise
        finally:
            if not verdict:
                breaker.released(call.request_id)
