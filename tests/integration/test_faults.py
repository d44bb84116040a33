"""Faults a deployment meets: NATS going away and coming back, a nats-server that cannot start."""

from __future__ import annotations

import argparse
import asyncio
import socket

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core import runner
from services.core.errors import Unavailable
from services.core.nats import NatsServer
from services.gateway.server import SERVICE_NAME, GatewayService
from tests.support.processes import children_named
from tests.support.system import make_settings, openai_tier, run_system

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def _until(check, what: str, tries: int = 300) -> None:
    """Poll ``check()`` until it is true; a hang guard, not a timing assertion."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {what}")


async def test_gateway_health_follows_its_nats_connection(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "setup_tracing", lambda *a, **k: None)  # no process-wide tracer from a test
    nats = NatsServer(data_dir=tmp_path / "js")
    await nats.start()
    tier = openai_tier("http://127.0.0.1:9/v1")  # never called: only health is asked
    settings = make_settings(nats.url, {"small": tier, "large": tier})
    gateways: list[GatewayService] = []

    def factory(nc, s, _args):
        gateways.append(GatewayService(nc=nc, settings=s))
        return gateways[-1]

    stop = asyncio.Event()
    # The gateway exactly as `python -m services.gateway` runs it: the runner connects NATS and wires the watch.
    served = asyncio.create_task(runner.run_until_stopped("gateway", factory, settings, argparse.Namespace(), stop))
    try:
        await _until(lambda: _started(gateways, served), "started")
        async with aio.insecure_channel(f"127.0.0.1:{gateways[0].port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status_is(want: int) -> bool:
                replies = [
                    await health.Check(health_pb2.HealthCheckRequest(service=s), timeout=5) for s in ("", SERVICE_NAME)
                ]
                return all(r.status == want for r in replies)

            assert await status_is(SERVING)
            await nats.stop()
            await _until(lambda: status_is(NOT_SERVING), "NOT_SERVING after NATS stopped")
            nats = NatsServer(data_dir=tmp_path / "js", port=nats.port)  # the same server back, same port and data
            await nats.start()
            await _until(lambda: status_is(SERVING), "SERVING after NATS came back")
    finally:
        stop.set()
        await asyncio.wait_for(served, 60)
        await nats.stop()


async def _started(gateways: list[GatewayService], served: asyncio.Task[None]) -> bool:
    if served.done():
        served.result()  # raises what stopped it
    return bool(gateways) and gateways[0].port != 0


async def test_a_nats_server_that_cannot_listen_reports_its_own_error_and_is_reaped(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = NatsServer(data_dir=tmp_path / "js", port=taken.getsockname()[1])
        # Before: a connect to the port (the other listener's) passed for "ready", and the dead server went unnoticed.
        with pytest.raises(Unavailable, match="address already in use") as caught:
            await server.start()
    assert "nats-server exited with code 1" in caught.value.message
    assert "Starting nats-server" not in caught.value.message  # its error lines, not its banner
    assert "JetStream" not in caught.value.message
    assert children_named("nats-server") == []  # exited and reaped: no zombie


async def test_a_nats_server_that_is_not_ready_in_time_is_stopped_not_left_running(tmp_path):
    server = NatsServer(data_dir=tmp_path / "js")
    with pytest.raises(Unavailable, match="did not listen"):
        await server.start(ready_timeout_s=0)
    assert children_named("nats-server") == []


async def test_an_answer_being_received_when_nats_goes_away_fails_at_once_naming_nats(nats_server, fake_openai):
    """Found by bench.chaos: chunks sent while nats-server restarted were lost, and the request waited for
    them until its deadline. Now it ends UNAVAILABLE as soon as the gateway's connection drops."""
    await fake_openai.control(delay_per_token_s=0.2, tokens=200)
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        request = cascade_pb2.GenerateRequest(prompt="Tell me a story.", policy=cascade_pb2.POLICY_LARGE)
        call = cascade_pb2_grpc.CascadeStub(channel).GenerateStream(request, timeout=60)
        assert (await call.read()).text  # the tier is answering
        await nats_server.stop()
        # What the runner's connection watch does on a disconnect (wired in a deployment; see the first test).
        await system.gateway.nats_connection_changed(False)
        with pytest.raises(aio.AioRpcError) as err:
            while await call.read() != aio.EOF:
                pass
        await nats_server.start()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "NATS connection lost" in (err.value.details() or "")
