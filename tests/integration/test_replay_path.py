"""The cascade over replay tiers: recorded answers of real models, through every real hop."""

from __future__ import annotations

import asyncio

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc, common_pb2
from services.core.nats import connect_nats
from services.outcomes import read_events
from tests.support.data import MMLU_PRO, write_routing_file
from tests.support.system import make_settings, replay_tier, run_system

ROWS = [
    ("p1", "What is the capital of France?", "small-7b", 1.0, "Paris."),
    ("p1", "What is the capital of France?", "big-70b", 1.0, "The capital of France is Paris."),
    ("p2", "Integrate x^2 from 0 to 3.", "small-7b", 0.0, "It is 3."),
    ("p2", "Integrate x^2 from 0 to 3.", "big-70b", 1.0, "The integral is 9."),
]


@pytest.fixture
def replay_file(tmp_path):
    return write_routing_file(tmp_path / "replay.parquet", ROWS)


@pytest.fixture
async def replay_system(nats_server, replay_file):
    def tier(model):
        return replay_tier(replay_file, model)

    settings = make_settings(
        nats_server.url, {"small": tier("small-7b"), "large": tier("big-70b")}, outcomes={"store_prompt_text": True}
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield system, cascade_pb2_grpc.CascadeStub(channel)


async def test_replay_tiers_answer_with_the_recorded_response(replay_system):
    system, stub = replay_system
    for policy, expected in [(cascade_pb2.POLICY_SMALL, "It is 3."), (cascade_pb2.POLICY_LARGE, "The integral is 9.")]:
        resp = await stub.Generate(
            cascade_pb2.GenerateRequest(prompt="Integrate x^2 from 0 to 3.", policy=policy, request_id=f"r{policy}"),
            timeout=10,
        )
        assert resp.text == expected
        assert resp.usage.estimated  # replay has no tokenizer: counts are labelled as estimates
    nc = await connect_nats(system.nats_url, name="t")
    try:
        events = [e async for e in read_events(nc.jetstream(), stream=system.settings.outcomes.stream, durable="t")]
    finally:
        await nc.drain()
    by_id = {e.request_id: e for e in events}
    assert by_id[f"r{cascade_pb2.POLICY_SMALL}"].attempts[0].replay_score == 0.0
    assert by_id[f"r{cascade_pb2.POLICY_LARGE}"].attempts[0].replay_score == 1.0
    assert by_id[f"r{cascade_pb2.POLICY_LARGE}"].prompt_text == "Integrate x^2 from 0 to 3."


async def test_replay_streams_in_pieces_that_add_up(replay_system):
    _, stub = replay_system
    request = cascade_pb2.GenerateRequest(prompt="What is the capital of France?", policy=cascade_pb2.POLICY_LARGE)
    chunks = [c async for c in stub.GenerateStream(request, timeout=10)]
    assert "".join(c.text for c in chunks) == "The capital of France is Paris."
    assert len(chunks) >= 3 and chunks[-1].final


async def test_unknown_prompt_is_not_found(replay_system):
    _, stub = replay_system
    with pytest.raises(aio.AioRpcError) as err:
        await stub.Generate(cascade_pb2.GenerateRequest(prompt="Never recorded"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cascade_outcomes_prints_events_as_json_lines(replay_system):
    import json
    import subprocess
    import sys

    system, stub = replay_system
    await stub.Generate(cascade_pb2.GenerateRequest(prompt="What is the capital of France?", request_id="cli-1"))
    for _ in range(100):
        if system.gateway.outcomes.pending == 0:
            break
        await asyncio.sleep(0.02)
    cmd = [sys.executable, "-m", "services.cli.main", "outcomes", "--nats", system.nats_url, "--durable", "ops"]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0
    assert [(e["type"], e["request_id"]) for e in lines] == [("OutcomeEvent", "cli-1")]
    assert lines[0]["route"]["tier"] in ("small", "large") and lines[0]["attempts"][0]["replay_score"] in (0.0, 1.0)
    again = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    assert (await again.communicate())[0] == b""  # the durable consumer does not repeat itself


# ------------------------------------------------ answer-level escalation on recorded MMLU-Pro answers

SMALL, SECOND, LARGE = "Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"


@pytest.fixture(scope="module")
def agree_and_disagree(tmp_path_factory, routing_data):
    """Recorded prompts where Mistral-7B and Llama-3.1-8B give the same final answer, and where they do not."""
    from classifier.answers import final_answer

    table = pq.read_table(MMLU_PRO, filters=[("model", "in", [SMALL, SECOND, LARGE])]).to_pandas()
    answers = table.pivot_table(index="prompt_id", columns="model", values="response", aggfunc="first").dropna()
    same = answers[SMALL].map(final_answer) == answers[SECOND].map(final_answer)
    picked = {"agree": answers.index[same][0], "disagree": answers.index[~same][0]}
    rows = table[table.prompt_id.isin(picked.values())]
    path = tmp_path_factory.mktemp("replay") / "pair.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), path)
    prompts = {k: rows[rows.prompt_id == v].prompt.iloc[0] for k, v in picked.items()}
    return path, prompts


@pytest.fixture
async def second_opinion_system(nats_server, agree_and_disagree):
    path, prompts = agree_and_disagree

    def tier(model, price):
        return {"backend": "replay", "replay": {"data": path, "model": model}, "price": price}

    settings = make_settings(
        nats_server.url,
        {
            "small": tier(SMALL, {"input_per_mtok": 0.2, "output_per_mtok": 0.2}),
            "second": tier(SECOND, {"input_per_mtok": 0.3, "output_per_mtok": 0.3}),
            "large": tier(LARGE, {"input_per_mtok": 0.9, "output_per_mtok": 0.9}),
        },
        router={"threshold": 1.0},  # every prompt starts on the small tier
        escalation={"confidence": "agreement", "second_opinion": {"tier": "second", "mode": "parallel"}},
    )
    async with run_system(nats_server, settings) as system, aio.insecure_channel(system.target) as channel:
        yield cascade_pb2_grpc.CascadeStub(channel), prompts


async def test_disagreeing_small_models_escalate_to_the_large_tier(second_opinion_system):
    stub, prompts = second_opinion_system
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt=prompts["disagree"]), timeout=20)
    route = resp.route
    assert route.escalated and route.tier == "large" and list(route.tiers_tried) == ["small", "large"]
    assert route.reason in (common_pb2.PATH_REASON_DISAGREEMENT, common_pb2.PATH_REASON_LOW_CONFIDENCE)
    assert route.agreement == 0.0 and route.second_opinion_tier == "second"
    assert route.confidence_model_version == "agreement-1"


async def test_agreeing_small_models_keep_the_small_answer(second_opinion_system):
    stub, prompts = second_opinion_system
    resp = await stub.Generate(cascade_pb2.GenerateRequest(prompt=prompts["agree"]), timeout=20)
    route = resp.route
    assert not route.escalated and route.tier == "small" and route.reason == common_pb2.PATH_REASON_CONFIDENT
    assert route.agreement == 1.0 and route.confidence == 1.0
    # The second opinion is paid for: more than the small tier's price for the same tokens.
    assert resp.cost_usd > (resp.usage.input_tokens + resp.usage.output_tokens) * 0.2 / 1e6
