"""The whole request path on real parts: gRPC client -> gateway -> NATS -> router/tier -> HTTP LLM server."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2, events_pb2
from services.core.nats import connect_nats, free_port
from services.outcomes import read_events
from tests.support.system import make_settings, openai_tier, run_system

SMALL_PRICE = {"input_per_mtok": 0.2, "output_per_mtok": 0.2}
LARGE_PRICE = {"input_per_mtok": 0.9, "output_per_mtok": 0.9}


def tiers(base_url: str) -> dict:
    """A small and a large tier on the same OpenAI-compatible server, priced differently."""
    return {"small": openai_tier(base_url, **SMALL_PRICE), "large": openai_tier(base_url, **LARGE_PRICE)}


@pytest.fixture
async def system(nats_server, fake_openai):
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        escalation={"min_confidence": 0.5},
    )
    async with run_system(nats_server, settings) as system:
        yield system


@pytest.fixture
async def stub(system):
    async with aio.insecure_channel(system.target) as channel:
        yield cascade_pb2_grpc.CascadeStub(channel)


async def outcomes(system, durable: str = "test") -> list:
    nc = await connect_nats(system.nats_url, name="test-reader")
    try:
        js = nc.jetstream()
        # The gateway publishes in the background; wait until what it submitted is stored.
        for _ in range(100):
            if system.gateway.outcomes.pending == 0:
                break
            await asyncio.sleep(0.02)
        return [e async for e in read_events(js, stream=system.settings.outcomes.stream, durable=durable)]
    finally:
        await nc.drain()


async def test_unary_generate_on_the_large_policy(stub, fake_openai):
    resp = await stub.Generate(
        cascade_pb2.GenerateRequest(prompt="Name a prime number.", policy=cascade_pb2.POLICY_LARGE, max_tokens=64),
        timeout=10,
    )
    assert resp.text.strip()
    assert resp.route.tier == "large" and list(resp.route.tiers_tried) == ["large"]
    assert not resp.route.escalated
    assert resp.finish_reason in (common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH)
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    expected_cost = (resp.usage.input_tokens + resp.usage.output_tokens) * 0.9 / 1e6
    assert resp.cost_usd == pytest.approx(expected_cost)
    assert resp.route.confidence == pytest.approx(0.9, abs=1e-3)  # the server's default token probability
    assert resp.timings.total_ms >= resp.timings.large_ms > 0


async def test_cascade_policy_is_routed_by_the_onnx_model(stub, system):
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is 2 + 2?"), timeout=10)
    route = resp.route
    assert route.policy == "cascade"
    assert route.router_model_version == system.router.policy._holder.model.version
    assert 0.0 <= route.router_score <= 1.0
    expected = "large" if route.router_score >= route.router_threshold else "small"
    assert route.tiers_tried[0] == expected
    assert resp.timings.route_ms > 0


@pytest.fixture
async def small_first_system(nats_server, fake_openai):
    """The router sends everything to the small tier (threshold above any score)."""
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        router={"threshold": 1.0},
    )
    async with run_system(nats_server, settings) as system:
        yield system


@pytest.fixture
async def always_small_first(small_first_system):
    async with aio.insecure_channel(small_first_system.target) as channel:
        yield cascade_pb2_grpc.CascadeStub(channel)


async def test_low_confidence_small_answer_escalates_to_large(always_small_first, fake_openai):
    resp = await always_small_first.Generate(
        cascade_pb2.GenerateRequest(prompt="Hard one [[confidence=0.2]]"), timeout=10
    )
    assert resp.route.escalated and list(resp.route.tiers_tried) == ["small", "large"]
    assert resp.route.tier == "large"
    assert resp.route.reason == common_pb2.PATH_REASON_LOW_CONFIDENCE
    assert resp.route.confidence_threshold == 0.5 and resp.route.confidence_model_version == "logprob-geomean-1"
    assert (await fake_openai.stats())["requests"] == 2
    # Both attempts are paid for: more than the small price alone, less than the large price alone.
    tokens = resp.usage.input_tokens + resp.usage.output_tokens
    assert tokens * 0.2 / 1e6 < resp.cost_usd < tokens * 0.9 / 1e6


async def test_confident_small_answer_is_not_escalated(always_small_first, fake_openai):
    resp = await always_small_first.Generate(cascade_pb2.GenerateRequest(prompt="Easy [[confidence=0.95]]"), timeout=10)
    assert resp.route.tier == "small" and not resp.route.escalated
    assert resp.route.reason == common_pb2.PATH_REASON_CONFIDENT
    assert (await fake_openai.stats())["requests"] == 1


async def test_streamed_escalation_shows_only_the_large_answer(always_small_first):
    request = cascade_pb2.GenerateRequest(prompt="Hard one [[confidence=0.2]]", max_tokens=30)
    chunks = [c async for c in always_small_first.GenerateStream(request, timeout=10)]
    *body, final = chunks
    assert body and {c.tier for c in body} == {"large"}
    assert final.final and final.route.escalated
    assert not any(c.retract for c in chunks)
    assert {c.request_id for c in chunks} == {final.request_id}  # the first chunk names the request too


async def test_speculative_stream_retracts_the_small_answer_seen_by_the_sdk(small_first_system):
    from services.sdk import AsyncCascadeClient, acollect

    async with AsyncCascadeClient(target=small_first_system.target, timeout=10) as client:
        chunks = [c async for c in client.stream("Hard one [[confidence=0.2]]", max_tokens=30, speculative=True)]
    retracts = [i for i, c in enumerate(chunks) if c.retract]
    assert len(retracts) == 1
    before, after = chunks[: retracts[0]], chunks[retracts[0] + 1 :]
    assert before and {c.tier for c in before} == {"small"}  # the small answer was shown live
    assert chunks[retracts[0]].text == "" and {c.tier for c in after} == {"large"}
    assert chunks[0].request_id and chunks[0].request_id == chunks[-1].request_id
    result = await acollect(iter_async(chunks))
    assert result.text == "".join(c.text for c in after) and result.route.escalated
    assert result.route.reason == "low_confidence"


async def iter_async(items):
    for item in items:
        yield item


async def test_first_chunk_carries_the_request_id(stub):
    request = cascade_pb2.GenerateRequest(prompt="Tell me a story.", policy=cascade_pb2.POLICY_LARGE, max_tokens=20)
    call = stub.GenerateStream(request, timeout=10)
    first = await call.read()
    assert first.request_id and not first.final and first.text
    call.cancel()


@pytest.fixture
async def budgeted(nats_server, fake_openai):
    """Every prompt escalates; tenant "capped" may use the large tier for no request at all."""
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        router={"threshold": 1.0},
        gateway={
            "budgets": {
                "capped": {"max_large_share": 0.0},
                "strict": {"max_large_usd": 0.0, "on_exceeded": "fail"},
            }
        },
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield system, cascade_pb2_grpc.CascadeStub(channel)


async def test_budget_keeps_an_escalation_on_the_small_tier_or_fails(budgeted):
    system, stub = budgeted
    hard = "Hard one [[confidence=0.2]]"
    free = await stub.Generate(cascade_pb2.GenerateRequest(prompt=hard, tenant="free"), timeout=10)
    assert free.route.escalated and not free.route.budget_limited
    capped = await stub.Generate(
        cascade_pb2.GenerateRequest(prompt=hard, tenant="capped", request_id="cap-1"), timeout=10
    )
    assert capped.route.tier == "small" and not capped.route.escalated
    assert capped.route.reason == common_pb2.PATH_REASON_BUDGET and capped.route.budget_limited
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Generate(
            cascade_pb2.GenerateRequest(prompt=hard, tenant="strict", request_id="strict-1"), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "strict" in err.value.details()
    events = {e.request_id: e for e in await outcomes(system) if isinstance(e, events_pb2.OutcomeEvent)}
    assert events["cap-1"].route.budget_limited and events["cap-1"].route.reason == common_pb2.PATH_REASON_BUDGET
    assert events["strict-1"].error.code == events_pb2.ERROR_CODE_RESOURCE_EXHAUSTED


async def test_small_policy_never_escalates(stub):
    resp = await stub.Generate(
        cascade_pb2.GenerateRequest(prompt="Hard one [[confidence=0.2]]", policy=cascade_pb2.POLICY_SMALL), timeout=10
    )
    assert resp.route.tier == "small" and not resp.route.escalated
    assert resp.route.confidence == pytest.approx(0.2, abs=1e-3)


async def test_stream_yields_chunks_then_a_final_summary(stub):
    call = stub.GenerateStream(
        cascade_pb2.GenerateRequest(prompt="Tell me a story.", policy=cascade_pb2.POLICY_LARGE, max_tokens=40),
        timeout=10,
    )
    chunks = [c async for c in call]
    assert len(chunks) >= 3
    *body, final = chunks
    assert final.final and not any(c.final for c in body)
    assert all(c.tier == "large" for c in body)
    assert "".join(c.text for c in body).strip()
    assert final.usage.output_tokens > 0 and final.route.tier == "large"
    unary = await stub.Generate(
        cascade_pb2.GenerateRequest(prompt="Tell me a story.", policy=cascade_pb2.POLICY_LARGE, max_tokens=40),
        timeout=10,
    )
    assert "".join(c.text for c in body) == unary.text


async def test_outcome_events_are_persisted_and_read_back_by_a_durable_consumer(stub, system):
    ids = []
    for i in range(3):
        resp = await stub.Generate(
            cascade_pb2.GenerateRequest(prompt=f"question {i}", tenant="team-a", tags={"run": str(i)}), timeout=10
        )
        ids.append(resp.request_id)
    events = await outcomes(system)
    by_id = {e.request_id: e for e in events if isinstance(e, events_pb2.OutcomeEvent)}
    assert set(ids) <= set(by_id)
    event = by_id[ids[1]]
    assert event.schema_version == 1 and event.tenant == "team-a" and event.tags["run"] == "1"
    assert len(event.prompt_sha256) == 64 and event.prompt_text == ""  # text is off by default
    assert event.attempts and event.attempts[-1].usage.output_tokens > 0
    assert event.cost_usd == pytest.approx(sum(a.cost_usd for a in event.attempts))
    assert event.timings.total_ms > 0 and event.route.router_model_version
    # The durable consumer resumes where it stopped: nothing is read twice.
    assert await outcomes(system) == []


async def test_feedback_is_recorded_once_per_distinct_score(stub, system):
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="hello"), timeout=10)
    fb = cascade_pb2.FeedbackRequest(request_id=resp.request_id, score=0.25, comment="meh")
    assert (await stub.Feedback(fb, timeout=5)).accepted
    assert not (await stub.Feedback(fb, timeout=5)).accepted  # a retried call is de-duplicated
    events = await outcomes(system, durable="fb")
    feedback = [e for e in events if isinstance(e, events_pb2.FeedbackEvent)]
    assert len(feedback) == 1 and feedback[0].request_id == resp.request_id and feedback[0].score == 0.25


@pytest.mark.parametrize(
    ("request_kwargs", "code"),
    [
        ({"prompt": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "   "}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "hi", "policy": 7}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "hi", "max_tokens": 1_000_000}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "hi", "temperature": 5.0}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "x" * 300_000}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ({"messages": [common_pb2.ChatMessage(role="wizard", content="hi")]}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_input_gets_a_clear_status(stub, system, request_kwargs, code, fake_openai):
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Generate(cascade_pb2.GenerateRequest(**request_kwargs), timeout=5)
    assert err.value.code() == code
    assert err.value.details()
    assert (await fake_openai.stats())["requests"] == 0  # rejected before any tier was asked
    assert await outcomes(system) == []  # and before it became a request with an outcome


@pytest.mark.parametrize("score", [-0.1, 1.5, math.nan])
async def test_feedback_score_out_of_range_is_invalid(stub, score):
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Feedback(cascade_pb2.FeedbackRequest(request_id="abc", score=score), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("policy", [cascade_pb2.POLICY_LARGE, cascade_pb2.POLICY_CASCADE])
async def test_llm_server_down_is_unavailable_within_the_deadline(nats_server, policy):
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings = make_settings(nats_server.url, {"small": openai_tier(down), "large": openai_tier(down)})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await cascade_pb2_grpc.CascadeStub(channel).Generate(
                cascade_pb2.GenerateRequest(prompt="hi", policy=policy, request_id="down-1"), timeout=30
            )
        # UNAVAILABLE, not DEADLINE_EXCEEDED: a refused connection is reported, not waited out.
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "127.0.0.1" in err.value.details()
        events = await outcomes(system)
    event = next(e for e in events if e.request_id == "down-1")
    assert event.error.code == events_pb2.ERROR_CODE_UNAVAILABLE
    assert all(a.error.code == events_pb2.ERROR_CODE_UNAVAILABLE for a in event.attempts)


async def test_slow_llm_server_the_deadline_holds_and_the_outcome_records_it(stub, system, fake_openai):
    await fake_openai.control(delay_first_token_s=5)
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Generate(
            cascade_pb2.GenerateRequest(prompt="slow", policy=cascade_pb2.POLICY_LARGE, request_id="slow-1"),
            timeout=1.0,
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # (Repeated with several deadlines, and the tier's own stop checked, in test_robustness.py.)
    events = {e.request_id: e for e in await outcomes(system) if isinstance(e, events_pb2.OutcomeEvent)}
    assert events["slow-1"].finish_reason == common_pb2.FINISH_REASON_ERROR
    assert events["slow-1"].error.code == events_pb2.ERROR_CODE_DEADLINE_EXCEEDED  # never CANCELLED


async def test_health_and_reflection_are_served(system):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with aio.insecure_channel(system.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        resp = await health.Check(health_pb2.HealthCheckRequest(service="cascade.v1.Cascade"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = [
            r async for r in refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        ]
        names = {s.name for s in replies[0].list_services_response.service}
        assert "cascade.v1.Cascade" in names and "grpc.health.v1.Health" in names


async def test_no_router_running_falls_back_to_the_large_tier(nats_server, fake_openai):
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url))
    async with (
        run_system(nats_server, settings, run_router=False) as system,
        aio.insecure_channel(system.target) as channel,
    ):
        resp = await cascade_pb2_grpc.CascadeStub(channel).Generate(
            cascade_pb2.GenerateRequest(prompt="hi"), timeout=10
        )
    assert resp.route.tier == "large" and "no router" in resp.route.router_error


async def test_no_tier_worker_is_unavailable(nats_server, fake_openai):
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url))
    async with (
        run_system(nats_server, settings, run_tiers=()) as system,
        aio.insecure_channel(system.target) as channel,
    ):
        with pytest.raises(aio.AioRpcError) as err:
            await cascade_pb2_grpc.CascadeStub(channel).Generate(
                cascade_pb2.GenerateRequest(prompt="hi", policy=cascade_pb2.POLICY_LARGE, request_id="none-1"),
                timeout=10,
            )
        events = {e.request_id: e for e in await outcomes(system)}
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "no worker" in err.value.details()
    assert events["none-1"].error.code == events_pb2.ERROR_CODE_UNAVAILABLE


async def test_gateway_serves_tls_to_the_sdk(nats_server, fake_openai, self_signed):
    from services.sdk import AsyncCascadeClient, TlsConfig, Unavailable

    key, cert = self_signed
    settings = make_settings(
        nats_server.url,
        tiers(fake_openai.base_url),
        gateway={"tls_cert": cert, "tls_key": key},
    )
    async with run_system(nats_server, settings) as system:
        tls = TlsConfig(root_certificates=cert)
        async with AsyncCascadeClient(target=f"localhost:{system.gateway.port}", tls=tls, timeout=10) as client:
            result = await client.generate("hello over TLS", policy="large")
        assert result.text and result.route.tier == "large"
        async with AsyncCascadeClient(target=f"localhost:{system.gateway.port}", timeout=2) as plain:
            with pytest.raises(Unavailable):
                await plain.generate("no TLS")


async def test_calibrated_policy_file_sets_router_and_escalation_thresholds(nats_server, fake_openai, tmp_path):
    from classifier.policy import CalibratedPolicy, save_policy

    path = tmp_path / "policy.json"
    save_policy(CalibratedPolicy(router_threshold=0.0, escalation_threshold=0.3), path)
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url), escalation={"calibration": path})
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        stub = cascade_pb2_grpc.CascadeStub(channel)
        resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="Anything [[confidence=0.2]]"), timeout=10)
        assert resp.route.router_threshold == 0.0  # every score reaches it: straight to large
        assert resp.route.tier == "large" and resp.route.reason == common_pb2.PATH_REASON_ROUTED_LARGE
        save_policy(CalibratedPolicy(router_threshold=1.0, escalation_threshold=0.3), path)
        system.router.policy._calibration.reload_if_changed()  # the interval is off in tests: check now
        resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt="Fine [[confidence=0.4]]"), timeout=10)
        assert resp.route.tier == "small" and resp.route.confidence_threshold == pytest.approx(0.3)


async def test_an_embedded_router_decides_as_the_router_service_does(nats_server, fake_openai):
    """router.mode embedded: no router process runs; the gateway's decision, its fields and the published
    RouteDecision are those the router service gives the same prompt."""
    settings = make_settings(nats_server.url, tiers(fake_openai.base_url), router={"mode": "embedded"})
    nc = await connect_nats(nats_server.url, name="decision-watcher")
    decisions = await nc.subscribe("cascade.events.decision")
    try:
        async with run_system(nats_server, settings, run_router=False) as system:
            async with aio.insecure_channel(system.target) as channel:
                stub = cascade_pb2_grpc.CascadeStub(channel)
                prompt = "Prove that there are infinitely many primes."
                request = cascade_pb2.GenerateRequest(
                    prompt=prompt, policy=cascade_pb2.POLICY_ROUTE, request_id="emb-1"
                )
                resp = await stub.Generate(request, timeout=10)
            published = events_pb2.RouteDecision.FromString((await decisions.next_msg(timeout=5)).data)
            # The router service object of the system is built (not run): its decision is the reference.
            reference = system.router.routing.decide("emb-1", prompt)
    finally:
        await nc.drain()
    route = resp.route
    assert route.reason == common_pb2.PATH_REASON_ROUTED and not route.router_error
    assert (route.router_score, route.router_threshold) == pytest.approx((reference.score, reference.threshold))
    assert route.router_model_version == reference.model_version != ""
    assert route.tiers_tried[0] == reference.tier
    assert published.request_id == "emb-1" and published.score == pytest.approx(reference.score)
