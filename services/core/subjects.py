"""NATS subject names and queue groups: the one place they are spelled.

Subscribers outside the project depend on these names (see the README's event schemas).
"""

from __future__ import annotations

# Request/reply: RouteRequest -> RouteDecision.
ROUTE = "cascade.route"
ROUTER_QUEUE = "router"

# Every routing decision, published for observers (RouteDecision).
DECISIONS = "cascade.events.decision"

# Model versions published, promoted, rolled back or refused (ModelEvent).
MODEL_EVENTS = "cascade.events.model"

# Request/reply: TierRequest -> TierAccept, then TokenChunks on the request's chunk subject.
TIER_PREFIX = "cascade.tier."

# JetStream: OutcomeEvent and FeedbackEvent.
OUTCOMES = "cascade.outcomes.request"
FEEDBACK = "cascade.outcomes.feedback"
OUTCOMES_ALL = "cascade.outcomes.>"

# JetStream: request ids seen by a gateway, one subject per id (``SEEN_PREFIX`` + a hash of the id),
# an empty message each. Feedback is accepted only for an id found here (or still being published).
SEEN_PREFIX = "cascade.requests.seen."
SEEN_ALL = "cascade.requests.seen.>"

# Inbox prefix for token chunks sent back to a gateway.
CHUNK_INBOX_PREFIX = "_INBOX.cascade.chunks"


def tier_subject(tier: str) -> str:
    return f"{TIER_PREFIX}{tier}"


def tier_queue(tier: str) -> str:
    return f"tier.{tier}"


# Fan-out (no queue group): the chunk subject of a tier attempt whose work should stop (the caller
# went away, or no longer needs it). Not the request id: a request's attempts on other tiers go on.
CANCEL = "cascade.cancel"


# NATS micro service names (services/core/liveness.py): pings on ``ping_subject(name)``.
ROUTER_SERVICE = "cascade-router"


def tier_service(tier: str) -> str:
    return f"cascade-tier-{tier}"


def ping_subject(service: str) -> str:
    return f"$SRV.PING.{service}"
