"""Joint calibration of a cascade: router threshold, escalation threshold and second-opinion mode
chosen together, on one split, for a target; bootstrap intervals for what it will do elsewhere.

Targets: ``quality=X`` (the cheapest policy keeping X of the large tier's quality),
``large-share=X`` (the best quality sending at most X of requests to the large tier) and
``cost=X`` (the best quality at most X USD per 1,000 requests). Ties go to the cheaper policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from classifier.policy import SECOND_OPINION_MODES, CalibratedPolicy, SecondOpinionMode
from training.policy_sim import Outcome, Replay, second_asked, summarise

# A threshold no score in [0, 1] reaches: route nothing / escalate everything below it.
ABOVE_ALL = 1.0 + 1e-6
_TARGETS = {"quality": "quality", "large-share": "large_share", "cost": "cost"}


@dataclass(frozen=True)
class Target:
    kind: str  # quality | large_share | cost
    value: float

    @property
    def spec(self) -> str:
        return f"{self.kind.replace('_', '-')}={self.value:g}"


def parse_policy_target(spec: str) -> Target:
    """``quality=0.95`` | ``large-share=0.3`` | ``cost=0.05`` (USD per 1,000 requests)."""
    key, sep, value = spec.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    bounded = key == "cost" or number <= 1.0
    if not sep or key not in _TARGETS or not number >= 0.0 or not bounded:
        raise ValueError(
            f"--target wants quality=X or large-share=X (X in [0, 1]) or cost=X (USD per 1,000 requests), got {spec!r}"
        )
    return Target(_TARGETS[key], number)


def router_thresholds(scores: np.ndarray, *, steps: int = 50) -> np.ndarray:
    """Thresholds sending 0, 1/steps, ..., all of the prompts straight to the large tier."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    n = len(ordered)
    ks = np.unique(np.round(np.linspace(0, n, steps + 1)).astype(int))
    return np.unique([ABOVE_ALL if k == 0 else ordered[k - 1] for k in ks])


def escalation_thresholds(r: Replay, *, levels: int = 60) -> np.ndarray:
    """Every distinct confidence (at most ``levels`` quantiles of them), 0 (never) and above all."""
    values = np.unique(np.concatenate([r.conf_alone, r.conf_with]))
    if len(values) > levels:
        values = np.unique(np.quantile(values, np.linspace(0, 1, levels)))
    return np.unique(np.concatenate([[0.0], values, [ABOVE_ALL]]))


def candidate_bases(r: Replay, *, band_levels: int = 5) -> list[CalibratedPolicy]:
    """Every router threshold x second-opinion mode (when_unsure: every band of confidence
    quantiles), with the escalation threshold left to the sweep."""
    cuts = np.unique(np.concatenate([np.quantile(r.conf_alone, np.linspace(0, 1, band_levels)), [ABOVE_ALL]]))
    bands = [(float(lo), float(hi)) for i, lo in enumerate(cuts) for hi in cuts[i + 1 :]]
    modes: list[tuple[SecondOpinionMode, float, float]] = [("never", 0.0, 1.0), ("parallel", 0.0, 1.0)]
    modes += [("when_unsure", lo, hi) for lo, hi in bands]
    return [
        CalibratedPolicy(
            router_threshold=float(t), escalation_threshold=0.0, second_opinion=m, unsure_low=lo, unsure_high=hi
        )
        for t in router_thresholds(r.router)
        for m, lo, hi in modes
    ]


def sweep(r: Replay, base: CalibratedPolicy, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Quality, cost per 1k and large share of ``base`` at every escalation threshold at once."""
    routed = r.router >= base.router_threshold
    asked = second_asked(r, base) & ~routed
    conf = np.where(asked, r.conf_with, r.conf_alone)
    escalated = ((conf[None, :] < thresholds[:, None]) & ~routed).astype(np.float64)
    n = len(r)
    quality = np.where(routed, r.q_large, r.q_small).mean() + escalated @ (r.q_large - r.q_small) / n
    cost = np.where(routed, r.cost_large, r.cost_small + asked * r.cost_second).mean() + escalated @ r.cost_large / n
    return {"quality": quality, "cost": cost * 1000.0, "large_share": routed.mean() + escalated.mean(axis=1)}


def choose(metrics: dict[str, np.ndarray], *, target: Target, large_quality: float) -> int | None:
    """Index of the candidate meeting ``target`` best (None when none meets it)."""
    q, c, s = metrics["quality"], metrics["cost"], metrics["large_share"]
    if target.kind == "quality":
        feasible, order = q >= target.value * large_quality - 1e-12, np.lexsort((-q, c))
    else:
        bound = s if target.kind == "large_share" else c
        feasible, order = bound <= target.value + 1e-12, np.lexsort((c, -q))
    order = order[feasible[order]]
    return int(order[0]) if len(order) else None


def calibrate(r: Replay, *, target: Target, modes: set[str] | None = None) -> tuple[CalibratedPolicy, dict[str, float]]:
    """The best policy for ``target`` on ``r`` (second-opinion ``modes`` only, default all) and
    its metrics there; ValueError when none meets the target."""
    unknown = (modes or set()) - set(SECOND_OPINION_MODES)
    if unknown:
        raise ValueError(f"unknown second-opinion modes {sorted(unknown)}; known: {SECOND_OPINION_MODES}")
    thresholds = escalation_thresholds(r)
    bases = [b for b in candidate_bases(r) if modes is None or b.second_opinion in modes]
    sweeps = [sweep(r, base, thresholds) for base in bases]
    metrics = {k: np.concatenate([s[k] for s in sweeps]) for k in ("quality", "cost", "large_share")}
    best = choose(metrics, target=target, large_quality=float(r.q_large.mean()))
    if best is None:
        raise ValueError(f"no policy reaches {target.spec} on the calibration prompts")
    base, t = divmod(best, len(thresholds))
    policy = replace(bases[base], escalation_threshold=float(thresholds[t]))
    return policy, {k: float(v[best]) for k, v in metrics.items()}


def bootstrap(o: Outcome, *, q_large: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric with its 95% percentile interval over ``resamples`` resamples of prompts."""
    point = summarise(o, large_quality=float(q_large.mean()))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(o.quality), size=(resamples, len(o.quality)))
    draws = {
        "quality": o.quality[idx].mean(axis=1),
        "quality_relative": o.quality[idx].mean(axis=1) / q_large[idx].mean(axis=1),
        "cost_per_1k_usd": o.cost[idx].mean(axis=1) * 1000.0,
        "large_share": o.large[idx].mean(axis=1),
        "second_opinion_share": o.second[idx].mean(axis=1),
        "added_latency_ms": o.added_ms[idx].mean(axis=1),
    }
    return {
        k: {"value": point[k], "low": float(np.percentile(d, 2.5)), "high": float(np.percentile(d, 97.5))}
        for k, d in draws.items()
    }


def bootstrap_metric(values: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """The mean of per-prompt ``values`` with its 95% percentile interval over resamples of prompts."""
    rng = np.random.default_rng(seed)
    draws = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"value": float(values.mean()), "low": float(low), "high": float(high)}
