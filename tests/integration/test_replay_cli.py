"""`cascade replay` against the real services on replay tiers: load, feedback, and labelled traffic."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import yaml

from cascade.v1 import events_pb2
from services.cli.export import collect
from services.cli.replay import gateway_tls, load_prompts, run_replay
from services.core.nats import connect_nats
from services.outcomes import read_events
from services.sdk import AsyncCascadeClient
from tests.support.data import write_routing_file
from tests.support.system import make_settings, replay_tier, run_system

# p4 has no answer of the small model: a replay small tier answers it NOT_FOUND.
ROWS = [
    ("p1", "What is the capital of France?", "small-7b", 1.0, "Paris."),
    ("p1", "What is the capital of France?", "big-70b", 1.0, "The capital of France is Paris."),
    ("p2", "Integrate x^2 from 0 to 3.", "small-7b", 0.0, "It is 3."),
    ("p2", "Integrate x^2 from 0 to 3.", "big-70b", 1.0, "The integral is 9."),
    ("p3", "Name a noble gas.", "small-7b", 1.0, "Neon."),
    ("p3", "Name a noble gas.", "big-70b", 1.0, "Argon is one."),
    ("p4", "Prove Fermat's last theorem.", "big-70b", 0.0, "That is a long story."),
]


@pytest.fixture
def data_file(tmp_path):
    return write_routing_file(tmp_path / "replay.parquet", ROWS, task="quiz")


@pytest.fixture
async def system(nats_server, data_file):
    tiers = {"small": replay_tier(data_file, "small-7b", 0.2), "large": replay_tier(data_file, "big-70b", 0.9)}
    outcomes = {"store_prompt_text": True, "store_answer_text": True}
    async with run_system(nats_server, make_settings(nats_server.url, tiers, outcomes=outcomes)) as system:
        yield system


async def stored(system, kind):
    for _ in range(100):  # the gateway publishes outcomes in the background
        if system.gateway.outcomes.pending == 0:
            break
        await asyncio.sleep(0.02)
    nc = await connect_nats(system.nats_url, name="t")
    try:
        events = read_events(nc.jetstream(), stream=system.settings.outcomes.stream, durable=None)
        return [e async for e in events if isinstance(e, kind)]
    finally:
        await nc.drain()


def config_file(tmp_path, system) -> str:
    """The YAML an operator would have: the running gateway's address and the tiers' models."""
    settings = system.settings.model_dump(mode="json", include={"nats", "tiers", "router"})
    settings["gateway"] = {"host": "0.0.0.0", "port": system.gateway.port}  # a wildcard host: this machine
    path = tmp_path / "cascade.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


async def test_replay_with_feedback_prints_a_summary_and_stores_the_recorded_scores(system, data_file, tmp_path):
    cmd = [sys.executable, "-m", "services.cli.main", "replay", "--data", str(data_file), "--config"]
    cmd += [config_file(tmp_path, system), "--policy", "small", "--feedback", "--rate", "50", "--json"]
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["sent"], summary["answered"], summary["errors"]) == (4, 3, {"NOT_FOUND": 1})
    assert summary["tiers"] == {"small": 3} and summary["large_share"] == 0.0
    assert summary["cost_usd"] > 0 and summary["mean_score"] == pytest.approx(2 / 3)
    assert summary["feedback_sent"] == 3 and summary["feedback_errors"] == {}

    outcomes = {e.request_id: e for e in await stored(system, events_pb2.OutcomeEvent)}
    answered = [a for e in outcomes.values() for a in e.attempts if not a.error.code]
    assert [(a.backend, a.model) for a in answered] == [("replay", "small-7b")] * 3  # who answered, as announced
    feedback = await stored(system, events_pb2.FeedbackEvent)
    by_prompt = {outcomes[f.request_id].tags["prompt_id"]: f.score for f in feedback}
    assert by_prompt == {"p1": 1.0, "p2": 0.0, "p3": 1.0}  # the small model's recorded scores


async def test_replayed_traffic_exports_as_labelled_rows(system, data_file):
    prompts = load_prompts(data_file, limit=3)
    async with AsyncCascadeClient(target=system.target, timeout=10) as client:
        summary = await run_replay(
            client,
            prompts,
            tier_models={"small": "small-7b", "large": "big-70b"},
            large_tier="large",
            concurrency=2,
            policy="large",
        )
    assert (summary.answered, summary.large_share, summary.feedback_sent) == (3, 1.0, 0)
    assert summary.mean_score == 1.0
    await stored(system, events_pb2.OutcomeEvent)  # waits for the publisher to drain

    rows, labels = await collect(system.settings, url=system.nats_url, since=None)
    got = {(r.tags["prompt_id"], r.model, r.score, r.source, r.response) for r in rows}
    assert got == {
        ("p1", "big-70b", 1.0, "replay", "The capital of France is Paris."),
        ("p2", "big-70b", 1.0, "replay", "The integral is 9."),
        ("p3", "big-70b", 1.0, "replay", "Argon is one."),
    }
    assert labels.outcomes == 3 and labels.feedback == 0


async def test_replay_reaches_a_gateway_that_requires_client_certificates(nats_server, data_file, self_signed):
    key, cert = self_signed
    tiers = {
        "small": {"backend": "replay", "replay": {"data": data_file, "model": "small-7b"}},
        "large": {"backend": "replay", "replay": {"data": data_file, "model": "big-70b"}},
    }
    gateway = {"tls_cert": cert, "tls_key": key, "tls_client_ca": cert}
    settings = make_settings(nats_server.url, tiers, gateway=gateway)
    async with run_system(nats_server, settings) as system:
        tls = gateway_tls(system.settings)
        async with AsyncCascadeClient(target=f"localhost:{system.gateway.port}", tls=tls, timeout=10) as client:
            summary = await run_replay(
                client, load_prompts(data_file, limit=1), tier_models={}, large_tier="large", policy="small"
            )
    assert (summary.sent, summary.answered, dict(summary.errors)) == (1, 1, {})
