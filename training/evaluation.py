"""Score a held-out set and report routing quality, baselines and cost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier import RouterModel
from services.core.settings import CascadeSettings, PriceSettings
from training.data import PairData
from training.metrics import (
    Curve,
    oracle_scores,
    random_curve,
    roc_auc,
    routing_curve,
    share_for_quality,
    summary,
)

CHARS_PER_TOKEN = 4.0
# Output length when the data has no response text (llmrouter, routellm_mmlu).
DEFAULT_OUTPUT_TOKENS = 256.0


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float


# Price roles: the tier that answers first, the second-opinion tier and the large tier.
PRICE_ROLES = ("small", "second", "large")


def prices_from_settings(settings: CascadeSettings, overrides: list[str] | None = None) -> dict[str, Price]:
    """Prices by role from the config's tiers (``tiers.<name>.price``), then ``--price`` overrides.

    The second-opinion tier is ``escalation.second_opinion.tier``; unset, it is priced as the small tier.
    """
    r = settings.router
    second = settings.escalation.second_opinion.tier
    names = {
        "small": r.small_tier,
        "second": second if second in settings.tiers else r.small_tier,
        "large": r.large_tier,
    }
    prices = {role: _price(settings.tiers[name].price) for role, name in names.items()}
    return {**prices, **dict(map(parse_price, overrides or []))}


def _price(p: PriceSettings) -> Price:
    return Price(p.input_per_mtok, p.output_per_mtok)


def parse_price(spec: str) -> tuple[str, Price]:
    """``small=0.2,0.2`` -> ("small", Price(0.2, 0.2))."""
    tier, sep, values = spec.partition("=")
    try:
        inp, out = (float(v) for v in values.split(","))
    except ValueError:
        raise ValueError(f"--price wants TIER=IN,OUT (USD per 1M tokens), got {spec!r}") from None
    if not sep or tier not in PRICE_ROLES or inp < 0 or out < 0:
        raise ValueError(f"--price wants ROLE=IN,OUT with ROLE one of {PRICE_ROLES}, got {spec!r}")
    return tier, Price(inp, out)


def estimate_tokens(chars: np.ndarray) -> np.ndarray:
    chars = np.asarray(chars, dtype=np.float64)
    return np.where(np.isnan(chars), DEFAULT_OUTPUT_TOKENS, chars / CHARS_PER_TOKEN)


def per_prompt_cost(data: PairData, prices: dict[str, Price]) -> tuple[np.ndarray, np.ndarray]:
    """USD per prompt if the small / the large tier answers it."""
    tokens_in = data.frame["prompt"].str.len().to_numpy(dtype=np.float64) / CHARS_PER_TOKEN
    out_small = estimate_tokens(data.frame["out_small"].to_numpy(dtype=np.float64))
    out_large = estimate_tokens(data.frame["out_large"].to_numpy(dtype=np.float64))
    small = (tokens_in * prices["small"].input + out_small * prices["small"].output) / 1e6
    large = (tokens_in * prices["large"].input + out_large * prices["large"].output) / 1e6
    return small, large


def cost_at_quality(
    *, data: PairData, scores: np.ndarray, curve: Curve, prices: dict[str, Price], fraction: float = 0.95
) -> dict[str, float]:
    """Cost of routing by ``scores`` at the lowest large share keeping ``fraction`` of quality."""
    k = share_for_quality(curve, fraction=fraction)
    small, large = per_prompt_cost(data, prices)
    routed = np.zeros(len(scores), dtype=bool)
    routed[np.argsort(-scores, kind="stable")[:k]] = True
    cost = float(np.where(routed, large, small).sum())
    all_large = float(large.sum())
    return {
        "quality_fraction": fraction,
        "large_share": k / len(scores),
        "cost_usd": cost,
        "all_large_cost_usd": all_large,
        "saving": 1.0 - cost / all_large if all_large else 0.0,
    }


def evaluate_scores(
    *, data: PairData, scores: np.ndarray, labels: np.ndarray, prices: dict[str, Price]
) -> dict[str, Any]:
    small, large = data.small, data.large
    curve = routing_curve(scores=scores, small=small, large=large)
    oracle = oracle_scores(small=small, large=large)
    oracle_curve = routing_curve(scores=oracle, small=small, large=large)
    return {
        "n_prompts": len(data),
        "quality_small": float(small.mean()),
        "quality_large": float(large.mean()),
        "roc_auc": roc_auc(scores=scores, labels=labels),
        **summary(curve),
        "cost_at_95": cost_at_quality(data=data, scores=scores, curve=curve, prices=prices),
        "random": summary(random_curve(small=small, large=large)),
        "oracle": {
            **summary(oracle_curve),
            "cost_at_95": cost_at_quality(data=data, scores=oracle, curve=oracle_curve, prices=prices),
        },
    }


def score_prompts(model: RouterModel, data: PairData, batch: int = 256) -> np.ndarray:
    """The router model's score of every prompt, in batches, with a progress bar."""
    prompts = data.prompts
    from tqdm import tqdm

    chunks = [model.score(prompts[i : i + batch]) for i in tqdm(range(0, len(prompts), batch), desc="score")]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def format_report(r: dict[str, Any]) -> str:
    """An ``evaluate_scores`` report as a table: the router beside the random and the oracle router."""
    rows = [("router", r), ("random", r["random"]), ("oracle", r["oracle"])]
    lines = [
        f"{r['n_prompts']} prompts; quality small {r['quality_small']:.3f}, large {r['quality_large']:.3f}; "
        f"ROC AUC {r['roc_auc']:.3f}",
        f"{'':8}{'APGR':>7}{'CPT50':>7}{'CPT80':>7}{'CPT95':>7}{'save@95%':>10}",
    ]
    for name, m in rows:
        saving = m.get("cost_at_95", {}).get("saving")
        cell = f"{saving:>10.1%}" if saving is not None else f"{'-':>10}"
        lines.append(f"{name:8}{m['apgr']:>7.3f}{m['cpt50']:>7.1%}{m['cpt80']:>7.1%}{m['cpt95']:>7.1%}{cell}")
    return "\n".join(lines)


def plot_curves(*, data: PairData, scores: np.ndarray, path: Path, title: str) -> None:
    """PNG of quality vs large-tier share for the model, a random router and the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    small, large = data.small, data.large
    curves = {
        "router": routing_curve(scores=scores, small=small, large=large),
        "random": random_curve(small=small, large=large),
        "oracle": routing_curve(scores=oracle_scores(small=small, large=large), small=small, large=large),
    }
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in curves.items():
        ax.plot(c.share, c.quality, label=name, linestyle="--" if name != "router" else "-")
    ax.axhline(0.95 * large.mean(), color="grey", linewidth=0.8, label="95% of large")
    ax.set(xlabel="share of prompts sent to the large tier", ylabel="mean quality", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
