"""What a finished request adds to the gateway's metrics (services/core/metrics.py defines them)."""

from __future__ import annotations

import time

from services.core import metrics
from services.gateway.record import RequestRecord


def status_of(record: RequestRecord) -> str:
    """The request's gRPC status name: OK, or its error's code (INVALID_ARGUMENT, UNAVAILABLE, ...)."""
    return "OK" if record.error is None else record.error.code.name


def observe(record: RequestRecord) -> None:
    """Count one request the cascade ran: latency, escalation, answer confidences and spend by tier."""
    route = record.route
    tier = route.tier or (route.tiers_tried[-1] if route.tiers_tried else "none")
    labels = {"tier": tier, "policy": route.policy, "status": status_of(record)}
    metrics.REQUEST_DURATION.record((record.finished or time.perf_counter()) - record.started, labels)
    if route.escalated:
        reason = route.reason.value if route.reason is not None else "unknown"
        metrics.ESCALATIONS.add(1, {"reason": reason, "policy": route.policy})
    for attempt in record.attempts:
        if attempt.confidence is not None:
            metrics.CONFIDENCE.record(attempt.confidence, {"tier": attempt.tier})
        cost = attempt.cost_usd(record.prices[attempt.tier])
        if cost:
            metrics.COST.add(cost, {"tier": attempt.tier, "purpose": attempt.purpose.value})
