"""`cascade ask` as a new user runs it: against a running gateway, on replay tiers."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
import yaml

from tests.support.data import write_routing_file
from tests.support.system import make_settings, replay_tier, run_system

ANSWERS = {
    ("What is the capital of France?", "small-7b"): "Paris.",
    ("What is the capital of France?", "big-70b"): "The capital of France is Paris.",
    ("Integrate x^2 from 0 to 3.", "small-7b"): "It is 3.",
    ("Integrate x^2 from 0 to 3.", "big-70b"): "The integral is 9.",
}


@pytest.fixture
def replay_file(tmp_path):
    rows = [(f"p{i}", prompt, model, 1.0, answer) for i, ((prompt, model), answer) in enumerate(ANSWERS.items())]
    return write_routing_file(tmp_path / "replay.parquet", rows)


@pytest.fixture
async def replay_system(nats_server, replay_file):
    def tier(model):
        return replay_tier(replay_file, model)

    settings = make_settings(nats_server.url, {"small": tier("small-7b"), "large": tier("big-70b")})
    async with run_system(nats_server, settings) as system:
        yield system


async def _ask(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        "ask",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(tmp_path, replay_file) -> str:
    tier = {"backend": "replay", "replay": {"data": str(replay_file), "model": "small-7b"}}
    path = tmp_path / "ask.yaml"
    path.write_text(yaml.safe_dump({"tiers": {"small": tier, "large": {**tier, "replay": {**tier["replay"]}}}}))
    return str(path)


async def test_ask_sample_shows_the_question_before_its_answer(replay_system, replay_file, tmp_path):
    system = replay_system
    config = _config(tmp_path, replay_file)
    for seed in ("0", "1"):
        code, out, err = await _ask(
            "--sample", "--seed", seed, "--config", config, "--target", system.target, "--policy", "small"
        )
        assert code == 0, err
        question, answer = out.split("\n\n---\n", 1)
        assert answer.strip() == ANSWERS[(question, "small-7b")], out
        assert "tier=small" in err


async def test_ask_sample_json_carries_the_question(replay_system, replay_file, tmp_path):
    system = replay_system
    args = ["--sample", "--json", "--config", _config(tmp_path, replay_file), "--target", system.target]
    code, out, err = await _ask(*args, "--policy", "large")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ANSWERS[(result["prompt"], "big-70b")]
