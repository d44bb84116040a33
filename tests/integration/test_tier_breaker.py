"""The large tier's worker is gone: its circuit breaker opens, then the small tier answers (and says so) or the
gateway fails at once with UNAVAILABLE naming the tier, by gateway.on_tier_down. Real nats-server, gateway,
router and small-tier worker; the large tier has no worker at all."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2, events_pb2
from tests.support.system import make_settings, openai_tier, read_outcomes, run_system

FAILURES = 2


@pytest.fixture(params=["small", "fail"])
async def large_down(request, nats_server, fake_openai):
    tier = openai_tier(fake_openai.base_url)
    settings = make_settings(
        nats_server.url,
        {"small": tier, "large": tier},
        router={"threshold": 0.0},  # every prompt is routed to the large tier
        # A cool-down longer than any test: the breaker stays open while the test looks.
        gateway={"breaker": {"failures": FAILURES, "open_s": 3600}, "on_tier_down": request.param},
    )
    async with (
        run_system(nats_server, settings, run_tiers=("small",)) as system,
        aio.insecure_channel(system.target) as channel,
    ):
        yield request.param, system, cascade_pb2_grpc.CascadeStub(channel)


async def _fails(stub, **kw) -> aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Generate(cascade_pb2.GenerateRequest(prompt="A question", **kw), timeout=20)
    return err.value


async def test_an_open_breaker_answers_from_the_small_tier_or_fails_fast(large_down):
    on_tier_down, system, stub = large_down
    for i in range(FAILURES):  # the breaker learns: the tier's own failure, after the admission retries
        err = await _fails(stub, policy=cascade_pb2.POLICY_LARGE, request_id=f"learn-{i}")
        assert err.code() == grpc.StatusCode.UNAVAILABLE and "no worker is serving tier 'large'" in err.details()

    if on_tier_down == "fail":
        err = await _fails(stub, request_id="down-1")
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "tier 'large' is down: its circuit breaker opened after 2 failures" in err.details()
        event = (await read_outcomes(system))["down-1"]
        assert event.error.code == events_pb2.ERROR_CODE_UNAVAILABLE and "circuit breaker" in event.error.message
        return

    reply = await stub.Generate(cascade_pb2.GenerateRequest(prompt="A question", request_id="down-1"), timeout=20)
    assert reply.text and reply.route.tier == "small" and list(reply.route.tiers_tried) == ["small"]
    assert reply.route.reason == common_pb2.PATH_REASON_TIER_DOWN and reply.route.tier_down == "large"
    event = (await read_outcomes(system))["down-1"]
    assert event.route.reason == common_pb2.PATH_REASON_TIER_DOWN and event.route.tier_down == "large"
    assert not event.HasField("error") or not event.error.code
    # An explicit policy large never moves to another tier: refused at once, naming the tier.
    err = await _fails(stub, policy=cascade_pb2.POLICY_LARGE)
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "tier 'large' is down" in err.details()
