"""Routing metrics as RouteLLM defines them, plus cost and a threshold table.

Route the top ``k`` prompts by score (descending) to the large tier and the rest to the
small tier. ``quality(k)`` is the mean score of the chosen answers. The performance gap
recovered is ``PGR(k) = (quality(k) - quality_small) / (quality_large - quality_small)``;
APGR is the area under PGR against the large-tier share ``k / n``; CPT(p) is the lowest
large-tier share whose PGR reaches ``p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Quality at every large-tier share ``k / n`` for k = 0..n, for one ranking."""

    share: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray  # threshold that routes exactly the top k (score >= threshold)


def routing_curve(*, scores: np.ndarray, small: np.ndarray, large: np.ndarray) -> Curve:
    """The quality-vs-large-share curve for routing by ``scores`` (stable order on ties)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    gain = (large - small)[order]
    n = len(order)
    quality = (small.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    thresholds = np.concatenate([[np.inf], sorted_scores])
    return Curve(share=np.arange(n + 1) / n, quality=quality, thresholds=thresholds)


def pgr(curve: Curve) -> np.ndarray:
    q_small, q_large = curve.quality[0], curve.quality[-1]
    gap = q_large - q_small
    return (curve.quality - q_small) / gap if gap > 0 else np.ones_like(curve.quality)


def apgr(curve: Curve) -> float:
    """Area under the PGR curve over large-tier share in [0, 1] (trapezoids)."""
    y = pgr(curve)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(curve.share)) / 2.0)


def cpt(curve: Curve, *, target: float) -> float:
    """Lowest large-tier share whose PGR is at least ``target`` (e.g. 0.5 for CPT(50%))."""
    hits = np.nonzero(pgr(curve) >= target - 1e-12)[0]
    return float(curve.share[hits[0]]) if len(hits) else 1.0


def share_for_quality(curve: Curve, *, fraction: float) -> int:
    """Lowest ``k`` whose quality reaches ``fraction`` of the large tier's quality."""
    hits = np.nonzero(curve.quality >= fraction * curve.quality[-1] - 1e-12)[0]
    return int(hits[0])


def roc_auc(*, scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def oracle_scores(*, small: np.ndarray, large: np.ndarray) -> np.ndarray:
    """A perfect router's ranking: the large tier's gain on each prompt."""
    return np.asarray(large - small, dtype=np.float64)


def random_curve(*, small: np.ndarray, large: np.ndarray) -> Curve:
    """The expected curve of a random router: quality rises linearly with the share."""
    n = len(small)
    share = np.arange(n + 1) / n
    quality = small.mean() + share * (large.mean() - small.mean())
    return Curve(share=share, quality=quality, thresholds=np.full(n + 1, np.nan))


def summary(curve: Curve) -> dict[str, float]:
    return {
        "apgr": apgr(curve),
        "cpt50": cpt(curve, target=0.5),
        "cpt80": cpt(curve, target=0.8),
        "cpt95": cpt(curve, target=0.95),
    }


def threshold_table(curve: Curve, *, steps: int = 100) -> list[dict[str, float]]:
    """Thresholds at large shares 0, 1/steps, ..., 1 with the quality each keeps
    (as a fraction of the large tier's quality)."""
    n = len(curve.share) - 1
    rows = []
    for i in range(steps + 1):
        k = min(int(np.ceil(i / steps * n - 1e-9)), n)
        threshold = 1.0 + 1e-6 if k == 0 else float(curve.thresholds[k])
        rows.append(
            {
                "large_share": round(k / n, 6),
                "threshold": threshold,
                "quality": round(float(curve.quality[k] / curve.quality[-1]), 6),
            }
        )
    return rows
