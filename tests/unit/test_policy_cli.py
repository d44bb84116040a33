"""`cascade train evaluate --policy` and the joint `cascade train calibrate` on a sample of MMLU-Pro."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.policy import load_policy
from tests.support.data import MMLU_PRO
from training.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cascade.replay.yaml"
pytestmark = pytest.mark.usefixtures("routing_data")
COMMON = ["--data", str(MMLU_PRO), "--config", str(CONFIG), "--confidence", "agreement", "--sample", "200"]
POLICIES = ["cascade", "route", "small", "large", "random"]


def test_calibrate_then_evaluate_every_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_file = tmp_path / "policy.json"
    args = ["train", "calibrate", "--target", "large-share=0.3", "--resamples", "200", "--out", str(policy_file)]
    assert main([*args, *COMMON]) == 0
    policy = load_policy(policy_file)
    assert policy.target == "large-share=0.3"
    assert policy.confidence_model_version == "agreement-1"
    assert policy.expected["large_share"]["value"] <= 0.45  # calibrated on validation, measured on test
    assert "95% bootstrap" in capsys.readouterr().out

    out = tmp_path / "eval"
    flags = [f for name in POLICIES for f in ("--policy", name)]
    assert main(["train", "evaluate", *flags, *COMMON, "--calibration", str(policy_file), "--out", str(out)]) == 0
    report = json.loads((out / "policies.json").read_text())
    assert set(report["policies"]) == set(POLICIES)
    assert report["n_prompts"] == 200
    assert report["cascade_policy"]["router_threshold"] == policy.router_threshold
    assert report["policies"]["large"]["quality_relative"] == 1.0
    assert report["policies"]["random"]["large_share"] == pytest.approx(report["policies"]["cascade"]["large_share"])
    assert report["prices_usd_per_million_tokens"]["large"] == {"input": 0.9, "output": 0.9}  # from the config
    assert (out / "policies.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert all(name in table for name in POLICIES) and "$/1k req" in table


def test_categories_filter_and_swapped_small_model(tmp_path: Path) -> None:
    args = ["train", "evaluate", "--policy", "small", "--categories", "law", "--small", "Meta-Llama-3_1-8B-Instruct"]
    assert main([*args, "--second", "Mistral-7B-Instruct-v0.2", *COMMON, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "policies.json").read_text())
    assert report["models"]["small"] == "Meta-Llama-3_1-8B-Instruct"
    assert report["categories"] == "law"
    with pytest.raises(ValueError, match="unknown categories"):
        main(["train", "evaluate", "--policy", "small", "--categories", "astrology", *COMMON, "--out", str(tmp_path)])


def test_an_unknown_confidence_model_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "evaluate", "--policy", "cascade", "--data", str(MMLU_PRO), "--confidence", "nope"]
    assert main([*args, "--out", str(tmp_path)]) == 1
    assert "--confidence NAME" in capsys.readouterr().err


def test_evaluate_without_policy_or_model_is_refused() -> None:
    with pytest.raises(ValueError, match="--model DIR"):
        main(["train", "evaluate", "--data", str(MMLU_PRO)])
