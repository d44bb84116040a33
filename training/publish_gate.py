"""The publish gate: a candidate model against the one in service, on data neither was trained on.

Router: APGR of routing by the model's score on the --data prompts held out from both models.
Scorer: escalation APGR (least confident first; what `cascade train evaluate-scorer` reports) on
the --data answers held out from both scorers, averaged over 0, 1 and 4 other answers; or, with
--from-nats, ROC AUC on the traffic answers held back from both (training.scorer_stream), where every
answer has a label but only some prompts a large-tier score.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier import RouterModel
from services.core.settings import DEFAULT_ROUTER_MODEL
from training.data import PairData, load_pair, pair_for, pair_overrides, split_masks
from training.metrics import apgr, routing_curve
from training.traffic import held_back_from, held_back_mask, trained_sources


@dataclass(frozen=True, kw_only=True)
class Comparison:
    metric: str
    candidate: float
    serving: float
    n: int  # prompts (router) or answers (scorer) compared on

    def passes(self, min_gain: float) -> bool:
        """Not worse than the serving model (by at least ``min_gain`` better, when it is given)."""
        return self.candidate - self.serving >= min_gain

    def summary(self, *, candidate: str, serving: str) -> str:
        return (
            f"{self.metric} on {self.n} held-out {'prompts' if self.metric == 'APGR' else 'answers'}: "
            f"candidate {candidate} {self.candidate:.4f}, serving {serving} {self.serving:.4f} "
            f"(gain {self.candidate - self.serving:+.4f})"
        )

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def compare(kind: str, *, candidate: Any, serving: Any, args: argparse.Namespace, traffic: Any = None) -> Comparison:
    """``traffic``: the stream's PairData (router) or TrafficRows (scorer), None without --from-nats."""
    if kind == "router":
        return compare_routers(candidate, serving, args, traffic=traffic)
    if traffic is not None:
        if args.data:
            raise ValueError("a scorer's gate reads --data or --from-nats, not both (their metrics differ)")
        return compare_scorers_on_traffic(candidate, serving, traffic)
    return compare_scorers(candidate, serving, args)


def compare_routers(
    candidate: RouterModel, serving: RouterModel, args: argparse.Namespace, *, traffic: PairData | None = None
) -> Comparison:
    """APGR of both models on the --data prompts and the ``traffic`` prompts that neither model was
    trained on (traffic: the held-back slice, training.traffic)."""
    parts = [held_out_by_all(models=[candidate, serving], args=args).frame] if args.data else []
    if traffic is not None:
        parts.append(held_back_from(traffic, [candidate.card, serving.card]).frame)
    data = PairData(pd.concat(parts, ignore_index=True)) if parts else PairData(pd.DataFrame())
    if len(data) == 0:
        raise ValueError("no --data or traffic prompt is held out from both models; give other data")
    small, large = data.small, data.large
    return Comparison(
        metric="APGR",
        candidate=apgr(routing_curve(scores=_score(candidate, data), small=small, large=large)),
        serving=apgr(routing_curve(scores=_score(serving, data), small=small, large=large)),
        n=len(data),
    )


def held_out_by_all(*, models: list[RouterModel], args: argparse.Namespace) -> PairData:
    """Each --data file; for a file a model was trained on, only the test split of that model's
    prompt-id split (of every such model), so neither model is scored on a prompt it has seen."""
    overrides = pair_overrides(args.pair, small=args.small, large=args.large, files=args.data or [])
    parts = []
    for path in map(Path, args.data):
        small, large = pair_for(path, overrides)
        data = load_pair(path, small=small, large=large)
        keep = np.ones(len(data), dtype=bool)
        for model in models:
            if path.stem in trained_sources(model.card):
                keep &= split_masks(data, seed=int(model.card.get("split", {}).get("seed", 0)))["test"]
        parts.append(data.subset(keep).frame)
    return PairData(pd.concat(parts, ignore_index=True))


def _score(model: RouterModel, data: PairData, batch: int = 256) -> np.ndarray:
    prompts = data.prompts
    chunks = [model.score(prompts[i : i + batch]) for i in range(0, len(prompts), batch)]
    return np.concatenate(chunks).astype(np.float64)


def compare_scorers(candidate: Any, serving: Any, args: argparse.Namespace) -> Comparison:
    """Escalation APGR of both scorers on the answers of the first --data file neither was trained on,
    for the candidate's small models, with the shipped router's score as the router signal."""
    from training.scorer_data import load_scored_answers, split
    from training.scorer_eval import TEST_KS, test_metrics

    if len(args.data) != 1:
        raise ValueError("a scorer is compared on one --data file (MMLU-Pro outcomes with full responses)")
    path = Path(args.data[0])
    answers = load_scored_answers(
        path, small=(), router=DEFAULT_ROUTER_MODEL, sample=args.sample, seed=0, large=candidate.card.get("large_model")
    )
    small = tuple(m for m in candidate.card.get("small_models", ()) if m in answers.pool) or answers.pool
    keep = np.ones(len(answers), dtype=bool)
    for model in (candidate, serving):
        if path.stem in trained_sources(model.card):
            keep &= split(answers, seed=int(model.card.get("split", {}).get("seed", 0)))["test"]
    held = answers.subset(keep)
    if len(held) == 0:
        raise ValueError("no --data answer is held out from both scorers; give other data")

    def mean_apgr(model: Any) -> float:
        metrics = test_metrics(model.score_features, held, small=small, seed=0)
        return float(np.mean([metrics[f"k{k}"]["mean"]["apgr"] for k in TEST_KS]))

    return Comparison(
        metric="escalation APGR", candidate=mean_apgr(candidate), serving=mean_apgr(serving), n=len(held) * len(small)
    )


def compare_scorers_on_traffic(candidate: Any, serving: Any, traffic: Any) -> Comparison:
    """ROC AUC of both scorers on the traffic answers (TrafficRows) of prompts neither was trained on."""
    from training.metrics import roc_auc

    keep = held_back_mask(traffic.keys, [candidate.card, serving.card])
    rows = traffic.subset(keep)
    if len(rows.y) == 0:
        raise ValueError("no labelled traffic answer is held back from both scorers; record more traffic")

    def auc(model: Any) -> float:
        return roc_auc(scores=model.score_features(rows.x), labels=rows.y)

    return Comparison(metric="ROC AUC", candidate=auc(candidate), serving=auc(serving), n=len(rows.y))
