"""The refusals a tier makes before it starts an answer, in one place: a worker sends them back in its
TierAccept, a tier embedded in the gateway (services/gateway/tiers.py) raises them at once."""

from __future__ import annotations

import time

from services.core.errors import DeadlineExceeded, InvalidRequest, Overloaded

# Samples per request (vLLM's `n`): beyond a handful, agreement gains little and the call costs n times.
MAX_SAMPLES = 16


def seconds_left(deadline_unix_ms: int) -> float:
    """Seconds until a request's deadline; an hour when it has none."""
    return deadline_unix_ms / 1e3 - time.time() if deadline_unix_ms else 3600.0


def admit(tier: str, *, samples: int, running: int, limit: int, deadline_unix_ms: int) -> None:
    """Raise why tier ``tier``, with ``running`` answers in progress, cannot start this one."""
    if samples > MAX_SAMPLES:
        raise InvalidRequest(f"tier {tier} was asked for {samples} samples; at most {MAX_SAMPLES}")
    if running >= limit:
        raise Overloaded(f"tier {tier} is at its limit of {limit} requests")
    if seconds_left(deadline_unix_ms) <= 0:
        raise DeadlineExceeded("deadline passed before the tier started")
