"""Liveness over NATS micro services: pings on their own subject, never on the work subjects."""

from __future__ import annotations

from cascade.v1 import events_pb2
from services.core import subjects
from services.core.liveness import ping
from services.core.nats import connect_nats
from tests.support.system import make_settings, openai_tier, run_system


async def test_router_and_workers_answer_pings_until_they_stop(nats_server):
    tier = openai_tier("http://127.0.0.1:9/v1", model="m")  # never called: only pings are sent
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    nc = await connect_nats(nats_server.url, name="prober")
    try:
        async with run_system(nats_server, settings) as system:
            router = await ping(nc, subjects.ROUTER_SERVICE)
            small = await ping(nc, subjects.tier_service("small"))
            assert router is not None and router["name"] == "cascade-router"
            assert small is not None and small["metadata"] == {"backend": "openai", "model": "m"}
            # An empty payload on a work subject is no probe any more: a worker refuses it as a bad request.
            reply = await nc.request(subjects.tier_subject("large"), b"", timeout=5)
            assert "TierRequest needs request_id" in events_pb2.TierAccept.FromString(reply.data).error.message
            await system.workers["small"].stop()
            assert await ping(nc, subjects.tier_service("small")) is None  # stopped: no longer live
            assert await ping(nc, subjects.tier_service("large")) is not None
    finally:
        await nc.drain()
