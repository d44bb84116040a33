"""`cascade ask` as a new user runs it: against a running gateway, on replay tiers."""

from __future__ import annotations

import asyncio
import json
import sys

import yaml

from tests.integration.test_replay_path import ROWS, replay_file, replay_system  # noqa: F401 (fixtures)

ANSWERS = {(prompt, model): response for _, prompt, model, _, response in ROWS}


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


def _config(tmp_path, replay_file) -> str:  # noqa: F811 (the fixture's value)
    tier = {"backend": "replay", "replay": {"data": str(replay_file), "model": "small-7b"}}
    path = tmp_path / "ask.yaml"
    path.write_text(yaml.safe_dump({"tiers": {"small": tier, "large": {**tier, "replay": {**tier["replay"]}}}}))
    return str(path)


async def test_ask_sample_shows_the_question_before_its_answer(replay_system, replay_file, tmp_path):  # noqa: F811
    system, _ = replay_system
    config = _config(tmp_path, replay_file)
    for seed in ("0", "1"):
        code, out, err = await _ask(
            "--sample", "--seed", seed, "--config", config, "--target", system.target, "--policy", "small"
        )
        assert code == 0, err
        question, answer = out.split("\n\n---\n", 1)
        assert answer.strip() == ANSWERS[(question, "small-7b")], out
        assert "tier=small" in err


async def test_ask_sample_json_carries_the_question(replay_system, replay_file, tmp_path):  # noqa: F811
    system, _ = replay_system
    args = ["--sample", "--json", "--config", _config(tmp_path, replay_file), "--target", system.target]
    code, out, err = await _ask(*args, "--policy", "large")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ANSWERS[(result["prompt"], "big-70b")]
