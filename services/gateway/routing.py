"""The router inside the gateway process (router.mode embedded): the Router the cascade calls, no NATS hop.

Scoring runs on the gateway's event loop, as it does on the router service's (the ONNX router takes
~0.4 ms). Each decision is still published on ``cascade.events.decision`` for observers, as the
router service publishes it.
"""

from __future__ import annotations

import contextlib

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from services.core import subjects
from services.core.settings import CascadeSettings
from services.core.telemetry import span
from services.gateway import wire
from services.gateway.domain import Decision
from services.router.routing import Routing


class EmbeddedRouter:
    def __init__(self, *, nc: NatsClient, settings: CascadeSettings) -> None:
        self._nc = nc
        self.routing = Routing(nc=nc, settings=settings)

    async def start(self) -> None:
        await self.routing.load()
        await self.routing.watch()

    async def stop(self) -> None:
        await self.routing.stop()

    async def route(self, *, request_id: str, text: str, timeout_s: float) -> Decision:
        with span(__name__, "router.route") as current:
            reply = self.routing.decide(request_id, text)
            current.set_attribute("cascade.tier", reply.tier)
            current.set_attribute("cascade.router_score", reply.score)
        with contextlib.suppress(NatsError):  # for observers only: NATS being away must not fail the request
            await self._nc.publish(subjects.DECISIONS, reply.SerializeToString())
        return wire.decision(reply)
