"""Scorer metrics: ECE, reliability bins, and the APGR of escalating least-confident-first."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import apgr, oracle_scores, routing_curve
from training.scorer_data import SIGNAL_SETS, mask_columns
from training.scorer_eval import ece, escalation_apgr, reliability


def test_ece_is_zero_when_each_bin_matches_its_share() -> None:
    conf = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert ece(conf, labels) == pytest.approx(0.0)
    assert [r["n"] for r in reliability(conf, labels)] == [4, 4]


def test_ece_of_an_overconfident_model() -> None:
    conf = np.full(10, 0.95)
    labels = np.array([1] * 5 + [0] * 5)
    assert ece(conf, labels) == pytest.approx(0.45)


def _pair(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    small = (rng.random(n) < 0.3).astype(float)
    large = np.maximum(small, (rng.random(n) < 0.6).astype(float))
    return small, large


def test_escalating_the_wrong_answers_first_beats_random() -> None:
    small, large = _pair()
    gain = large - small
    perfect = escalation_apgr(1.0 - gain, small=small, large=large)
    oracle = apgr(routing_curve(scores=oracle_scores(small=small, large=large), small=small, large=large))
    assert perfect == pytest.approx(oracle)
    assert perfect > 0.7 > 0.5 > 0.3 > escalation_apgr(gain, small=small, large=large)


def test_tied_confidences_count_as_random_order() -> None:
    small, large = _pair()
    # One constant confidence: whatever the row order, the expected curve is the random one.
    assert escalation_apgr(np.full(len(small), 0.5), small=small, large=large) == pytest.approx(0.5)
    order = np.argsort(large - small)
    assert escalation_apgr(np.full(len(small), 0.5), small=small[order], large=large[order]) == pytest.approx(0.5)


def test_a_signal_set_zeroes_the_other_groups() -> None:
    from classifier.confidence.features import FEATURE_NAMES, GROUPS

    x = np.ones((2, len(FEATURE_NAMES)), dtype=np.float32)
    kept = mask_columns(x, "agreement")
    assert kept[:, [FEATURE_NAMES.index(n) for n in GROUPS["agreement"]]].all()
    assert kept.sum() == 2 * len(GROUPS["agreement"])
    assert set(SIGNAL_SETS["all"]) == set(GROUPS)


def test_cli_offers_every_signal_set() -> None:
    from training.cli import SCORER_SIGNAL_SETS
    from training.scorer_data import DEFAULT_SIGNALS

    assert set(SCORER_SIGNAL_SETS) == set(SIGNAL_SETS)
    assert DEFAULT_SIGNALS in SIGNAL_SETS
