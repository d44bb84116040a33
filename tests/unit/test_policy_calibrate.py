"""Joint calibration picks the cheapest (or best) policy for its target, and its file loads back."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classifier.policy import load_policy, save_policy
from tests.unit.test_policy_sim import four_prompts, random_replay
from training.data import PairData, split_masks
from training.policy_calibrate import ABOVE_ALL, bootstrap, calibrate, parse_policy_target
from training.policy_data import held_out_mask
from training.policy_signals import split_seeds
from training.policy_sim import simulate_cascade, summarise


def test_quality_target_takes_the_cheapest_policy_that_keeps_it() -> None:
    # Keeping the large tier's quality (0.75): route prompt 0 and keep every small answer (prompt 3's
    # is right where the large tier's is wrong) costs (4 + 1 + 1 + 1) / 4; routing by score >= 0.2
    # keeps it too but costs (4 + 1 + 4 + 4) / 4, and a second opinion only adds cost.
    policy, metrics = calibrate(four_prompts(), target=parse_policy_target("quality=1.0"))
    assert policy.router_threshold == pytest.approx(0.9)
    assert policy.second_opinion == "never"
    assert policy.escalation_threshold <= 0.5
    assert metrics["quality"] == pytest.approx(0.75)
    assert metrics["cost"] == pytest.approx(1750.0)
    # With prompt 3's small answer wrong too, prompt 2 must reach the large tier: routing by
    # score >= 0.2 costs (4 + 1 + 4 + 4) / 4; escalating it on disagreement also escalates prompt 3
    # and costs (4 + 1.5 + 5.5 + 5.5) / 4.
    harder = replace(four_prompts(), q_small=np.array([0.0, 1.0, 0.0, 0.0]))
    policy, metrics = calibrate(harder, target=parse_policy_target("quality=1.0"))
    assert (policy.router_threshold, policy.second_opinion) == (pytest.approx(0.2), "never")
    assert (metrics["quality"], metrics["cost"]) == pytest.approx((0.75, 3250.0))


def test_large_share_target_takes_the_best_quality_under_the_share() -> None:
    policy, metrics = calibrate(four_prompts(), target=parse_policy_target("large-share=0.5"))
    assert policy.router_threshold == pytest.approx(0.9)
    assert metrics["large_share"] <= 0.5
    assert (metrics["quality"], metrics["cost"]) == pytest.approx((0.75, 1750.0))


def test_cost_target_and_an_unreachable_target() -> None:
    _, metrics = calibrate(four_prompts(), target=parse_policy_target("cost=2000"))
    assert (metrics["quality"], metrics["cost"]) == pytest.approx((0.75, 1750.0))
    with pytest.raises(ValueError, match="no policy reaches cost=10"):
        calibrate(four_prompts(), target=parse_policy_target("cost=10"))


def test_modes_can_be_restricted() -> None:
    policy, _ = calibrate(four_prompts(), target=parse_policy_target("quality=1.0"), modes={"parallel"})
    assert policy.second_opinion == "parallel"


@pytest.mark.parametrize("spec", ["quality=1.5", "large-share=-0.1", "cost=abc", "speed=1", "quality"])
def test_bad_targets_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="--target wants"):
        parse_policy_target(spec)


@pytest.mark.parametrize("spec", ["quality=0.9", "large-share=0.3", "cost=900"])
def test_calibration_meets_its_target_on_synthetic_data_and_writes_a_loadable_policy(spec: str, tmp_path: Path) -> None:
    validation, test = random_replay(2000, seed=2), random_replay(2000, seed=3)
    target = parse_policy_target(spec)
    policy, metrics = calibrate(validation, target=target)
    got = summarise(simulate_cascade(validation, policy), large_quality=float(validation.q_large.mean()))
    assert got["cost_per_1k_usd"] == pytest.approx(metrics["cost"])
    if target.kind == "quality":
        assert got["quality_relative"] >= 0.9
        all_large = summarise(simulate_cascade(validation, replace(policy, router_threshold=0.0)), large_quality=1)
        assert got["cost_per_1k_usd"] < all_large["cost_per_1k_usd"]
    else:
        key = "large_share" if target.kind == "large_share" else "cost_per_1k_usd"
        assert got[key] <= target.value + 1e-9
    expected = bootstrap(simulate_cascade(test, policy), q_large=test.q_large, resamples=200, seed=0)
    save_policy(replace(policy, target=target.spec, expected=expected), tmp_path / "policy.json")
    loaded = load_policy(tmp_path / "policy.json")
    assert loaded.target == target.spec
    assert loaded.escalation_threshold == policy.escalation_threshold
    for interval in loaded.expected.values():
        assert interval["low"] <= interval["value"] <= interval["high"]


def test_bootstrap_is_seeded_and_brackets_the_point_estimate() -> None:
    r = random_replay(500, seed=4)
    policy = calibrate(r, target=parse_policy_target("large-share=0.5"))[0]
    a = bootstrap(simulate_cascade(r, policy), q_large=r.q_large, resamples=300, seed=7)
    b = bootstrap(simulate_cascade(r, policy), q_large=r.q_large, resamples=300, seed=7)
    assert a == b
    assert a["quality"]["low"] < a["quality"]["value"] < a["quality"]["high"]
    assert np.isfinite(ABOVE_ALL) and ABOVE_ALL > 1.0


def test_prompts_any_model_trained_on_are_left_out() -> None:
    router = {"split": {"seed": 0}, "training_data": ["../data/mmlu_pro.parquet"]}
    scorer = {"split": {"seed": 5}}  # no training_data: assume it saw every file
    other = {"split": {"seed": 9}, "training_data": ["llmrouter.parquet"]}
    assert split_seeds([router, scorer, other, {}], stem="mmlu_pro") == [0, 5]
    assert split_seeds([other], stem="mmlu_pro") == [0]
    frame = pd.DataFrame({"source": "mmlu_pro", "prompt_id": [f"p{i}" for i in range(2000)]})
    test = held_out_mask(frame, split="test", seeds=[0, 5])
    masks = {seed: split_masks(PairData(frame), seed=seed) for seed in (0, 5)}
    assert test.sum() > 0
    assert not (test & masks[5]["train"]).any()
    assert (test <= masks[0]["test"]).all()
