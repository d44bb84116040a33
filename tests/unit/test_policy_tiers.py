"""Replay of the N-tier climb on hand-worked prompts, its agreement with the two-tier replay, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.policy import CalibratedPolicy, load_policy
from tests.support.data import MMLU_PRO
from training.cli import main
from training.policy_calibrate import Target
from training.policy_sim import Replay, simulate_cascade
from training.policy_tiers import Climb, Ladder, calibrate_climb, simulate_climb, summarise_climb

NAMES = ["s", "m", "l"]


def three_prompts() -> Ladder:
    # Prompt 0: easy, small confident. 1: small unsure, medium confident. 2: both unsure; router score high.
    return Ladder(
        router=np.array([0.1, 0.2, 0.6]),
        quality=np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        cost=np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0], [10.0, 10.0, 10.0]]),
        cost_second=np.zeros(3),
        conf={
            (0, 0): np.array([0.9, 0.1, 0.1]),
            (1, 0): np.array([0.9, 0.9, 0.1]),  # medium judged after the small answer
            (1, 1): np.array([0.9, 0.9, 0.1]),  # medium as the starting tier
        },
    )


def test_the_climb_stops_at_the_first_confident_answer_and_pays_every_attempt():
    o = simulate_climb(three_prompts(), Climb(cuts=(1.1, 1.1), steps=(0.5, 0.5), max_escalations=2))
    assert o.answered.tolist() == [0, 1, 2]
    assert o.cost.tolist() == [1.0, 4.0, 14.0]
    assert o.quality.tolist() == [1.0, 1.0, 1.0]
    s = summarise_climb(o, n_tiers=3, top_quality=1.0, names=NAMES)
    assert s["large_share"] == pytest.approx(1 / 3) and s["answered_by:m"] == pytest.approx(1 / 3)


def test_bands_start_in_the_middle_and_max_escalations_caps_the_climb():
    r = three_prompts()
    banded = simulate_climb(r, Climb(cuts=(0.5, 1.1), steps=(0.5, 0.5), max_escalations=2))
    assert banded.started.tolist() == [0, 0, 1] and banded.cost.tolist() == [1.0, 4.0, 13.0]
    capped = simulate_climb(r, Climb(cuts=(1.1, 1.1), steps=(0.5, 0.5), max_escalations=1))
    assert capped.answered.tolist() == [0, 1, 1] and capped.quality.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("mode", ["never", "parallel"])
def test_two_tiers_replay_exactly_as_the_two_tier_cascade(mode):
    rng = np.random.default_rng(1)
    n = 300
    r2 = Replay(
        router=rng.random(n),
        conf_alone=rng.random(n),
        conf_with=rng.random(n),
        q_small=rng.integers(0, 2, n).astype(float),
        q_large=rng.integers(0, 2, n).astype(float),
        cost_small=rng.random(n),
        cost_second=rng.random(n),
        cost_large=rng.random(n) + 1,
        ms_small=np.zeros(n),
        ms_second=np.zeros(n),
    )
    parallel = mode == "parallel"
    ladder = Ladder(
        router=r2.router,
        quality=np.stack([r2.q_small, r2.q_large]),
        cost=np.stack([r2.cost_small, r2.cost_large]),
        cost_second=r2.cost_second if parallel else np.zeros(n),
        conf={(0, 0): r2.conf_with if parallel else r2.conf_alone},
    )
    policy = CalibratedPolicy(router_threshold=0.7, escalation_threshold=0.4, second_opinion=mode)
    expected = simulate_cascade(r2, policy)
    got = simulate_climb(ladder, Climb(cuts=(0.7,), steps=(0.4,), max_escalations=1))
    np.testing.assert_allclose(got.cost, expected.cost)
    np.testing.assert_allclose(got.quality, expected.quality)
    np.testing.assert_allclose(got.top_used, expected.large)


def test_calibration_meets_the_target_at_the_lowest_cost():
    climb, metrics = calibrate_climb(three_prompts(), target=Target("quality", 1.0), max_escalations=2)
    # Cheaper than the climb above (19 / 3): the router's cut sends prompt 2 straight to the top.
    assert metrics["quality"] == 1.0 and metrics["cost"] == pytest.approx(15 / 3 * 1000)
    assert simulate_climb(three_prompts(), climb).started.tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match="no 3-tier policy"):
        calibrate_climb(three_prompts(), target=Target("cost", 0.5), max_escalations=2)


CONFIG3 = Path(__file__).resolve().parents[2] / "configs" / "cascade.replay3.yaml"
TIERS = "Mistral-7B-Instruct-v0.2,Meta-Llama-3_1-8B-Instruct,Meta-Llama-3_1-70B-Instruct"


@pytest.mark.usefixtures("routing_data")
def test_calibrate_and_evaluate_a_tier_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data", str(MMLU_PRO), "--config", str(CONFIG3), "--confidence", "agreement", "--sample", "150"]
    policy_file = tmp_path / "p3.json"
    args = ["train", "calibrate", "--tiers", TIERS, "--target", "quality=0.9", "--resamples", "100"]
    assert main([*args, *common, "--out", str(policy_file)]) == 0
    policy = load_policy(policy_file)
    assert len(policy.router_thresholds) == 2 and len(policy.escalation_thresholds) == 2
    assert policy.tiers == TIERS.split(",") and policy.target == "quality=0.9"
    out = tmp_path / "eval"
    evaluate = ["train", "evaluate", "--policy", "cascade", "--tiers", TIERS, "--calibration", str(policy_file)]
    assert main([*evaluate, *common, "--out", str(out)]) == 0
    report = json.loads((out / "ladder.json").read_text())
    cascade = report["policies"]["cascade"]
    assert cascade["steps"] == policy.escalation_thresholds
    assert sum(cascade[f"answered_by:{m}"] for m in TIERS.split(",")) == pytest.approx(1.0)
    assert report["policies"]["only Meta-Llama-3_1-70B-Instruct"]["quality_relative"] == 1.0
    assert report["prices_usd_per_million_tokens"][1] == {"input": 0.3, "output": 0.3}  # medium, from the config
    with pytest.raises(ValueError, match="router.tiers has 3"):
        main(["train", "evaluate", "--policy", "cascade", "--tiers", "a,b", *common])
