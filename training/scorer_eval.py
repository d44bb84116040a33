"""Scorer metrics: calibration (ECE, reliability curve), AUC, and APGR of escalating by confidence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics import Curve, apgr, oracle_scores, random_curve, roc_auc, routing_curve
from training.scorer_data import Answers, build_rows

BINS = 10


def reliability(conf: np.ndarray, labels: np.ndarray, *, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: mean confidence, share acceptable, count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {"confidence": float(conf[mask].mean()), "acceptable": float(labels[mask].mean()), "n": int(mask.sum())}
            )
    return rows


def ece(conf: np.ndarray, labels: np.ndarray, *, bins: int = BINS) -> float:
    """Expected calibration error: count-weighted |confidence - acceptable share| over the bins."""
    rows = reliability(conf, labels, bins=bins)
    n = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["confidence"] - r["acceptable"]) for r in rows) / n) if n else float("nan")


def escalation_apgr(conf: np.ndarray, *, small: np.ndarray, large: np.ndarray) -> float:
    """APGR when the least confident answers go to the large tier first; tied confidences count
    as escalated in random order (their expected curve), so no data order leaks into the metric."""
    order = np.argsort(conf, kind="stable")
    gain = (large - small)[order]
    _, inverse = np.unique(conf[order], return_inverse=True)
    tied_mean = np.bincount(inverse, weights=gain) / np.bincount(inverse)
    n = len(conf)
    quality = (small.sum() + np.concatenate([[0.0], np.cumsum(tied_mean[inverse])])) / n
    return apgr(Curve(share=np.arange(n + 1) / n, quality=quality, thresholds=np.zeros(n + 1)))


def evaluate(conf: np.ndarray, *, labels: np.ndarray, small: np.ndarray, large: np.ndarray) -> dict[str, Any]:
    """Every metric of one set of confidences, with random and oracle escalation beside."""
    return {
        "n": len(conf),
        "apgr": escalation_apgr(conf, small=small, large=large),
        "auc": roc_auc(scores=conf, labels=labels),
        "ece": ece(conf, labels),
        "random_apgr": apgr(random_curve(small=small, large=large)),
        "oracle_apgr": apgr(routing_curve(scores=oracle_scores(small=small, large=large), small=small, large=large)),
        "mean_confidence": float(conf.mean()) if len(conf) else float("nan"),
        "acceptable_share": float(labels.mean()) if len(labels) else float("nan"),
    }


def plot_reliability(curves: dict[str, list[dict[str, float]]], path: Path) -> None:
    """A reliability diagram: one line per named curve, the diagonal for perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for name, rows in curves.items():
        ax.plot([r["confidence"] for r in rows], [r["acceptable"] for r in rows], marker="o", label=name)
    ax.set_xlabel("confidence")
    ax.set_ylabel("share of answers acceptable")
    ax.set_title("answer confidence: reliability")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# Other answers a test row is scored with: none, a second opinion, four samples.
TEST_KS = (0, 1, 4)


def test_metrics(conf_of: Any, test: Answers, *, small: Sequence[str], seed: int) -> dict[str, Any]:
    """Metrics per test k and small model, with the mean over models; ``conf_of(x)`` scores rows."""
    out: dict[str, Any] = {}
    for k in TEST_KS:
        per = {}
        for m in small:
            rows = build_rows(test, small_models=[m], ks=[k], router_share=1.0, seed=seed + 1)
            per[m] = evaluate(conf_of(rows.x), labels=rows.y, small=rows.small, large=rows.large)
        keys = ("apgr", "auc", "ece", "random_apgr", "oracle_apgr")
        out[f"k{k}"] = {"mean": {key: float(np.mean([r[key] for r in per.values()])) for key in keys}, "per_model": per}
    return out


def label_metrics(conf: np.ndarray, *, labels: np.ndarray, small: np.ndarray, large: np.ndarray) -> dict[str, Any]:
    """Metrics of answers whose large-tier score may be unknown (NaN, as in traffic): AUC and ECE on
    every answer; escalation APGR (beside random and oracle) on those whose prompt has one."""
    out: dict[str, Any] = {
        "n": len(conf),
        "auc": roc_auc(scores=conf, labels=labels),  # NaN with one class only
        "ece": ece(conf, labels),
        "mean_confidence": float(conf.mean()) if len(conf) else float("nan"),
        "acceptable_share": float(labels.mean()) if len(labels) else float("nan"),
    }
    known = np.isfinite(large)
    if known.any():
        e = evaluate(conf[known], labels=labels[known], small=small[known], large=large[known])
        out["escalation"] = {k: e[k] for k in ("n", "apgr", "random_apgr", "oracle_apgr")}
    return out
