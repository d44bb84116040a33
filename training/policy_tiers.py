"""Replay and calibration of a cascade over N tiers (router.tiers, cheapest first), as the gateway climbs.

The router's score picks the starting tier by N-1 cuts; from there each answer below the top whose
confidence is below its step's threshold escalates one step up, at most ``max_escalations`` times;
the answer reached last is returned. The cheapest tier's answer may have a parallel second opinion
(its answer joins the evidence); a higher answer is judged with every earlier answer of the request
(lower tiers' and the second opinion) as the other answers, as services/gateway/small.py does.
Every attempt is paid. With two tiers this is the two-tier cascade of policy_sim (second opinion
never or parallel); ``when_unsure`` is only replayed there.

Calibration here is simple, not the full joint search of policy_calibrate: every cut at one router
threshold (a prompt starts on the cheapest tier or at the top) x a grid of per-step escalation
thresholds (coarser with more tiers, about 1,000 combinations), the cheapest meeting the target.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.policy_calibrate import ABOVE_ALL, Target, choose, router_thresholds

# Per-step escalation thresholds tried in calibration: about this many combinations in all.
GRID_COMBINATIONS = 1000


@dataclass(frozen=True, kw_only=True)
class Ladder:
    """Per prompt (one column each): the router's score; per tier (one row each): quality and cost.

    ``conf[(i, s)]``: confidence of tier i's answer when the climb started on tier s (the others are
    the answers of tiers s..i-1, and the second opinion's when s is 0 and it was asked).
    """

    router: np.ndarray
    quality: np.ndarray  # (tiers, prompts)
    cost: np.ndarray  # (tiers, prompts), USD
    cost_second: np.ndarray  # (prompts,); zeros without a second opinion
    conf: dict[tuple[int, int], np.ndarray]

    @property
    def n_tiers(self) -> int:
        return int(self.quality.shape[0])

    def __len__(self) -> int:
        return len(self.router)


@dataclass(frozen=True, kw_only=True)
class Climb:
    """One N-tier policy: router cuts, per-step escalation thresholds, escalations allowed."""

    cuts: tuple[float, ...]
    steps: tuple[float, ...]
    max_escalations: int


@dataclass(frozen=True, kw_only=True)
class LadderOutcome:
    quality: np.ndarray
    cost: np.ndarray
    answered: np.ndarray  # tier index of the returned answer, per prompt
    started: np.ndarray  # tier index the router picked
    top_used: np.ndarray  # the top tier was asked


def simulate_climb(r: Ladder, p: Climb) -> LadderOutcome:
    n, top = len(r), r.n_tiers - 1
    start = np.searchsorted(np.asarray(p.cuts, dtype=np.float64), r.router, side="right")
    answered = np.full(n, -1)
    cost = np.where(start == 0, r.cost_second, 0.0)
    cols = np.arange(n)
    for tier in range(r.n_tiers):
        here = (answered < 0) & (start <= tier)
        cost = cost + here * r.cost[tier]
        last = (tier == top) | (tier - start >= p.max_escalations)
        keep = here if tier == top else here & (last | (_conf_at(r, tier, start) >= p.steps[tier]))
        answered[keep] = tier
    return LadderOutcome(
        quality=r.quality[answered, cols],
        cost=cost,
        answered=answered,
        started=start,
        top_used=answered == top,
    )


def _conf_at(r: Ladder, tier: int, start: np.ndarray) -> np.ndarray:
    out = np.zeros(len(r))
    for s in range(tier + 1):
        out = np.where(start == s, r.conf[(tier, s)], out)
    return out


def summarise_climb(o: LadderOutcome, *, n_tiers: int, top_quality: float, names: list[str]) -> dict[str, float]:
    quality = float(o.quality.mean())
    out = {
        "quality": quality,
        "quality_relative": quality / top_quality if top_quality > 0 else float("nan"),
        "cost_per_1k_usd": float(o.cost.mean() * 1000.0),
        "large_share": float(o.top_used.mean()),
    }
    for i, name in enumerate(names[:n_tiers]):
        out[f"answered_by:{name}"] = float((o.answered == i).mean())
    return out


def step_grid(r: Ladder, *, levels: int) -> np.ndarray:
    """Confidence quantiles of every judged answer, with 0 (never escalate) and above all (always)."""
    values = np.concatenate([c for (tier, _), c in r.conf.items() if tier < r.n_tiers - 1])
    qs = np.unique(np.quantile(values, np.linspace(0, 1, max(levels - 2, 1)))) if len(values) else np.zeros(0)
    return np.unique(np.concatenate([[0.0], qs, [ABOVE_ALL]]))


def calibrate_climb(r: Ladder, *, target: Target, max_escalations: int) -> tuple[Climb, dict[str, float]]:
    """The cheapest (cut, per-step thresholds) meeting ``target`` on ``r``; ValueError when none does."""
    n_steps = r.n_tiers - 1
    levels = max(3, round(GRID_COMBINATIONS ** (1 / max(n_steps, 1))))
    grid = step_grid(r, levels=levels)
    candidates = [
        Climb(cuts=(float(c),) * n_steps, steps=tuple(float(x) for x in steps), max_escalations=max_escalations)
        for c in router_thresholds(r.router)
        for steps in itertools.product(grid, repeat=n_steps)
    ]
    outcomes = [simulate_climb(r, p) for p in candidates]
    metrics = {
        "quality": np.array([o.quality.mean() for o in outcomes]),
        "cost": np.array([o.cost.mean() * 1000.0 for o in outcomes]),
        "large_share": np.array([o.top_used.mean() for o in outcomes]),
    }
    best = choose(metrics, target=target, large_quality=float(r.quality[-1].mean()))
    if best is None:
        raise ValueError(f"no {r.n_tiers}-tier policy reaches {target.spec} on the calibration prompts")
    return candidates[best], {k: float(v[best]) for k, v in metrics.items()}


def build_ladder(
    *,
    router: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    cost_second: np.ndarray,
    texts: list[list[str]],
    second: list[str] | None,
    confidence: Callable[[list[str], list[tuple[str, ...]]], np.ndarray],
) -> Ladder:
    """Confidence of every (tier, start) pair: ``confidence(answers, others)`` scores one answer per prompt."""
    n_tiers, n = quality.shape
    conf = {}
    for tier in range(n_tiers - 1):
        for s in range(tier + 1):
            others = [
                tuple(texts[j][k] for j in range(s, tier)) + ((second[k],) if second is not None and s == 0 else ())
                for k in range(n)
            ]
            conf[(tier, s)] = confidence(texts[tier], others)
    return Ladder(router=router, quality=quality, cost=cost, cost_second=cost_second, conf=conf)
