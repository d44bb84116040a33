"""gateway.tenants through the real stack: SDK -> grpc.aio gateway (interceptor) -> NATS -> tiers.

Tokens map to tenants; the tenant decides which policies a request may use and how many requests it
may make; the authenticated tenant, not the one a request claims, is what the outcome records.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.sdk import AsyncCascadeClient, Overloaded, PermissionDenied, RemoteError, Unauthenticated
from tests.support.system import System, make_settings, openai_tier, read_outcomes, run_system

TOKEN_A, TOKEN_B = "token-of-team-a", "token-of-team-b"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TENANTS = {
    "team-a": {"tokens_sha256": [sha256(TOKEN_A)], "policies": ["cascade", "small"]},
    # A rate that refills one request in ~17 minutes: the third request of the burst is refused.
    "team-b": {"tokens_sha256": [sha256(TOKEN_B)], "rate_per_s": 0.001, "burst": 2},
}


@pytest.fixture
async def system(nats_server, fake_openai) -> AsyncIterator[System]:
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(nats_server.url, {"small": tier, "large": tier}, gateway={"tenants": TENANTS})
    async with run_system(nats_server, settings) as system:
        yield system


def client(system: System, token: str | None = None) -> AsyncCascadeClient:
    return AsyncCascadeClient(target=system.target, timeout=10, token=token)


async def test_a_call_without_a_valid_token_is_unauthenticated(system: System) -> None:
    for token in (None, "not-a-token-of-anyone"):
        async with client(system, token) as c:
            with pytest.raises(Unauthenticated) as info:
                await c.generate("Name a prime number.")
            assert isinstance(info.value, RemoteError) and "gateway.tenants" in info.value.message
            with pytest.raises(Unauthenticated):
                async for _ in c.stream("Name a prime number."):
                    pass
            with pytest.raises(Unauthenticated):
                await c.feedback("some-request", 1.0)
    async with client(system, TOKEN_A) as c:  # the scheme is case-insensitive; any other is refused
        with pytest.raises(Unauthenticated):
            await c.generate("Name a prime number.", metadata={"authorization": f"Basic {TOKEN_A}"})
        assert (await c.generate("x", metadata={"authorization": f"bearer {TOKEN_A}"})).text


async def test_health_needs_no_token(system: System) -> None:
    async with aio.insecure_channel(system.target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_policy_the_tenant_may_not_use_is_permission_denied(system: System) -> None:
    async with client(system, TOKEN_A) as c:
        with pytest.raises(PermissionDenied, match="tenant 'team-a' may not use policy 'large'"):
            await c.generate("Name a prime number.", policy="large")
        with pytest.raises(PermissionDenied):
            async for _ in c.stream("Name a prime number.", policy="route"):
                pass
        assert (await c.generate("Name a prime number.", policy="small")).route.tier == "small"
        assert (await c.generate("Name a prime number.")).text  # no policy: the default, cascade, allowed


async def test_the_authenticated_tenant_is_recorded_not_the_claimed_one(system: System) -> None:
    async with client(system, TOKEN_A) as c:
        result = await c.generate("Name a prime number.", tenant="someone-else", request_id="req-team-a")
    assert result.text
    outcomes = await read_outcomes(system)
    assert outcomes["req-team-a"].tenant == "team-a"


async def test_beyond_the_tenants_burst_is_resource_exhausted(system: System) -> None:
    async with client(system, TOKEN_B) as b, client(system, TOKEN_A) as a:
        for _ in range(2):
            assert (await b.generate("Name a prime number.")).text
        with pytest.raises(Overloaded, match="tenant 'team-b' is over its request rate"):
            await b.generate("Name a prime number.")
        assert (await a.generate("Name a prime number.")).text  # another tenant's bucket is its own


async def test_cascade_ask_sends_its_token(system: System, monkeypatch, capsys) -> None:
    from services.cli.ask import main as ask
    from services.cli.main import build_parser

    def run(*argv: str) -> int:
        return ask(build_parser().parse_args(["ask", "--target", system.target, "--json", *argv, "Name a prime."]))

    assert await asyncio.to_thread(run) == 1  # the sync client in a thread: the gateway runs on this loop
    assert "Unauthenticated" in capsys.readouterr().err
    assert await asyncio.to_thread(run, "--token", TOKEN_A) == 0
    assert json.loads(capsys.readouterr().out)["text"]
    monkeypatch.setenv("CASCADE_TOKEN", TOKEN_A)
    assert await asyncio.to_thread(run) == 0
