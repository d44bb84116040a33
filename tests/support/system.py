"""The whole cascade in one test: gateway, router and tier workers as real services.

Every hop is real: services talk through a real nats-server, the gateway is a real
grpc.aio server on a free port, tiers call a real HTTP server (or replay files).
They share the test's event loop only to keep the fixture simple.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import ConnectionReconnectingError

from cascade.v1 import events_pb2
from services.core.nats import NatsServer, connect_nats
from services.core.settings import CascadeSettings
from services.gateway.server import GatewayService
from services.outcomes import read_events
from services.router.service import RouterService
from services.tier.worker import TierWorker


@dataclass
class System:
    settings: CascadeSettings
    nats_url: str
    gateway: GatewayService
    router: RouterService
    workers: dict[str, TierWorker] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"


def openai_tier(base_url: str, model: str = "fake-model", **price: float) -> dict[str, Any]:
    return {
        "backend": "openai",
        "openai": {"base_url": base_url, "model": model, "timeout_s": 30, "connect_timeout_s": 1},
        "price": price or {"input_per_mtok": 0.2, "output_per_mtok": 0.2},
    }


def replay_tier(data: Path | str, model: str, price: float | None = None) -> dict[str, Any]:
    """A replay tier answering as ``model`` from a routing-data file (priced per million tokens, in and out)."""
    tier: dict[str, Any] = {"backend": "replay", "replay": {"data": data, "model": model}}
    if price is not None:
        tier["price"] = {"input_per_mtok": price, "output_per_mtok": price}
    return tier


def make_settings(nats_url: str, tiers: dict[str, Any], **sections: Any) -> CascadeSettings:
    sections.setdefault("gateway", {})
    sections["gateway"] = {"port": 0, **sections["gateway"]}
    sections.setdefault("router", {})
    sections["router"] = {"reload_interval_s": 0, **sections["router"]}
    # Token log-probabilities unless a test asks for another confidence model: deterministic with
    # the fake OpenAI server's [[confidence=...]] prompts, and independent of the learned scorer's file.
    sections.setdefault("escalation", {})
    sections["escalation"] = {"confidence": "logprob", **sections["escalation"]}
    # Each system its own outcome spool (a spool directory belongs to one gateway).
    sections.setdefault("outcomes", {})
    sections["outcomes"] = {"spool_dir": tempfile.mkdtemp(prefix="cascade-spool-"), **sections["outcomes"]}
    sections["nats"] = {**sections.get("nats", {}), "url": nats_url}
    return CascadeSettings(tiers=tiers, **sections)


async def _drain(nc: NatsClient) -> None:
    try:
        await nc.drain()
    except ConnectionReconnectingError:  # a test stopped nats-server and this client has not reconnected yet
        await nc.close()


@asynccontextmanager
async def run_system(
    nats: NatsServer, settings: CascadeSettings, *, run_router: bool = True, run_tiers: tuple[str, ...] | None = None
) -> AsyncIterator[System]:
    async with AsyncExitStack() as stack:

        async def connect(name: str) -> NatsClient:
            nc = await connect_nats(nats.url, name=name)
            stack.push_async_callback(_drain, nc)
            return nc

        async def started(service: Any) -> Any:
            await service.start()
            stack.push_async_callback(service.stop)
            return service

        router = RouterService(nc=await connect("router"), settings=settings)
        if run_router:
            await started(router)
        workers = {}
        for tier in settings.worker_tiers if run_tiers is None else run_tiers:  # embedded: the gateway calls it
            worker = TierWorker(
                nc=await connect(f"tier-{tier}"),
                tier=tier,
                settings=settings.tiers[tier],
                max_payload_bytes=settings.nats.max_payload_bytes,
            )
            workers[tier] = await started(worker)
        gateway = await started(GatewayService(nc=await connect("gateway"), settings=settings))
        yield System(settings=settings, nats_url=nats.url, gateway=gateway, router=router, workers=workers)


async def eventually(predicate: Callable[[], bool], *, within_s: float = 10.0) -> bool:
    """Whether ``predicate`` becomes true within ``within_s`` (polled): for asserting what happened, not when."""
    for _ in range(int(within_s / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def read_outcomes(system: System, durable: str = "test") -> dict[str, events_pb2.OutcomeEvent]:
    """The outcome events stored so far, by request id (waits for the gateway's background publisher)."""
    await eventually(lambda: system.gateway.outcomes.pending == 0, within_s=5)
    nc = await connect_nats(system.nats_url, name="test-reader")
    try:
        stream = system.settings.outcomes.stream
        events = [e async for e in read_events(nc.jetstream(), stream=stream, durable=durable)]
    finally:
        await nc.drain()
    return {e.request_id: e for e in events if isinstance(e, events_pb2.OutcomeEvent)}
