"""The cascade over replay tiers: recorded answers of real models, through every real hop."""

from __future__ import annotations

import asyncio

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc import aio

from cascade.v1 import cascade_pb2, cascade_pb2_grpc
from services.core.nats import connect_nats
from services.outcomes import read_events
from tests.support.system import make_settings, run_system

ROWS = [
    ("p1", "What is the capital of France?", "small-7b", 1.0, "Paris."),
    ("p1", "What is the capital of France?", "big-70b", 1.0, "The capital of France is Paris."),
    ("p2", "Integrate x^2 from 0 to 3.", "small-7b", 0.0, "It is 3."),
    ("p2", "Integrate x^2 from 0 to 3.", "big-70b", 1.0, "The integral is 9."),
]


@pytest.fixture
def replay_file(tmp_path):
    cols = list(zip(*ROWS, strict=True))
    table = pa.table(
        {
            "prompt_id": cols[0],
            "dataset": ["t"] * 4,
            "task": ["t"] * 4,
            "subtask": [None] * 4,
            "prompt": cols[1],
            "model": cols[2],
            "score": pa.array(cols[3], pa.float32()),
            "response": cols[4],
        }
    )
    path = tmp_path / "replay.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture
async def replay_system(nats_server, replay_file):
    def tier(model):
        return {"backend": "replay", "replay": {"data": replay_file, "model": model}}

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
