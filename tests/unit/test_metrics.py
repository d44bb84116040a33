"""Routing metrics against small examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classifier.thresholds import pick_threshold
from training.data import PairData
from training.evaluation import Price, cost_at_quality, parse_price, per_prompt_cost
from training.metrics import (
    apgr,
    cpt,
    oracle_scores,
    random_curve,
    roc_auc,
    routing_curve,
    share_for_quality,
    threshold_table,
)

SMALL = np.array([1.0, 0.0, 0.0, 1.0])
LARGE = np.array([1.0, 1.0, 1.0, 0.0])
SCORES = np.array([0.9, 0.8, 0.1, 0.5])
# Ranked: prompts 0, 1, 3, 2 with gains 0, +1, -1, +1 -> quality 0.5, 0.5, 0.75, 0.5, 0.75.


def test_routing_curve_by_hand() -> None:
    curve = routing_curve(scores=SCORES, small=SMALL, large=LARGE)
    np.testing.assert_allclose(curve.share, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.quality, [0.5, 0.5, 0.75, 0.5, 0.75])


def test_apgr_and_cpt_by_hand() -> None:
    curve = routing_curve(scores=SCORES, small=SMALL, large=LARGE)
    # PGR = 0, 0, 1, 0, 1 -> trapezoids 0 + 0.125 + 0.125 + 0.125.
    assert apgr(curve) == pytest.approx(0.375)
    assert cpt(curve, target=0.5) == pytest.approx(0.5)
    assert cpt(curve, target=0.95) == pytest.approx(0.5)


def test_oracle_and_random_baselines() -> None:
    oracle = routing_curve(scores=oracle_scores(small=SMALL, large=LARGE), small=SMALL, large=LARGE)
    np.testing.assert_allclose(oracle.quality, [0.5, 0.75, 1.0, 1.0, 0.75])
    assert apgr(oracle) == pytest.approx(1.375)
    assert cpt(oracle, target=0.95) == pytest.approx(0.25)
    rand = random_curve(small=SMALL, large=LARGE)
    assert apgr(rand) == pytest.approx(0.5)
    assert cpt(rand, target=0.8) == pytest.approx(1.0)  # 0.75 falls short on a 4-prompt grid


def test_roc_auc_by_hand() -> None:
    labels = LARGE > SMALL  # positives score 0.8 and 0.1, negatives 0.9 and 0.5: 1 of 4 pairs right
    assert roc_auc(scores=SCORES, labels=labels) == pytest.approx(0.25)
    assert roc_auc(scores=np.array([0.5, 0.5]), labels=np.array([1, 0])) == pytest.approx(0.5)


def test_threshold_table_and_pick() -> None:
    curve = routing_curve(scores=SCORES, small=SMALL, large=LARGE)
    table = threshold_table(curve, steps=4)
    assert [row["threshold"] for row in table] == [pytest.approx(1.000001), 0.9, 0.8, 0.5, 0.1]
    assert [row["quality"] for row in table] == pytest.approx([2 / 3, 2 / 3, 1.0, 2 / 3, 1.0], abs=1e-6)
    assert pick_threshold(table, quality=0.95) == 0.8
    assert pick_threshold(table, large_share=0.3) == 0.8
    assert pick_threshold(table, large_share=0.0) > 1.0
    assert share_for_quality(curve, fraction=0.95) == 2
    with pytest.raises(ValueError):
        pick_threshold(table, large_share=0.2, quality=0.9)


def test_cost_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "prompt": ["x" * 400, "y" * 400],
            "small": [1.0, 0.0],
            "large": [1.0, 1.0],
            "out_small": [np.nan, 40.0],
            "out_large": [np.nan, 40.0],
        }
    )
    data = PairData(frame)
    prices = {"small": Price(1.0, 2.0), "large": Price(10.0, 20.0)}
    small, large = per_prompt_cost(data, prices)
    # 100 input tokens; 256 output tokens when no response is recorded, else chars / 4.
    np.testing.assert_allclose(small, [(100 + 512) / 1e6, (100 + 20) / 1e6])
    np.testing.assert_allclose(large, [(1000 + 5120) / 1e6, (1000 + 200) / 1e6])
    scores = np.array([0.1, 0.9])
    curve = routing_curve(scores=scores, small=data.small, large=data.large)
    cost = cost_at_quality(data=data, scores=scores, curve=curve, prices=prices)
    assert cost["large_share"] == 0.5
    assert cost["cost_usd"] == pytest.approx(small[0] + large[1])
    assert cost["saving"] == pytest.approx(1 - (small[0] + large[1]) / large.sum())


def test_parse_price() -> None:
    assert parse_price("large=0.9,1.2") == ("large", Price(0.9, 1.2))
    for bad in ["medium=1,2", "small=1", "small=a,b", "small=-1,2"]:
        with pytest.raises(ValueError):
            parse_price(bad)
