"""`cascade train compare-scorer`: how well each signal set transfers, as escalation APGR and ECE.

Three scenarios on MMLU-Pro answers, each split by prompt id (``training.data.split_masks``):
in-distribution (train and test on every cheap model's answers), cross-model (train on the weakest
cheap model's answers, Mistral-7B on MMLU-Pro, test on each other cheap model's), cross-category (train on 7 categories,
test on the other 7). Every test escalates small -> Llama-3.1-70B, least confident first.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.scorer_data import (
    SIGNAL_SETS,
    TRAIN_KS,
    Answers,
    build_rows,
    load_scored_answers,
    mask_columns,
    split,
)
from training.scorer_eval import TEST_KS, test_metrics
from training.scorer_fit import fit

# The k (number of others) each test is run at: none, a second opinion, four samples.


@dataclass(frozen=True)
class Scenario:
    name: str
    train: Answers
    test: Answers
    train_small: tuple[str, ...]
    test_small: tuple[str, ...]


def scenarios(answers: Answers, *, seed: int) -> list[Scenario]:
    masks, cheap = split(answers, seed=seed), answers.pool
    train, test = answers.subset(masks["train"]), answers.subset(masks["test"])
    cats = sorted(answers.frame["subtask"].unique())
    first = np.random.default_rng(seed).permutation(cats)[: len(cats) // 2]
    in_first = np.asarray(answers.frame["subtask"].isin(first))
    return [
        Scenario("in-distribution", train, test, cheap, cheap),
        Scenario("cross-model", train, test, cheap[:1], cheap[1:]),
        Scenario(
            "cross-category",
            answers.subset(masks["train"] & in_first),
            answers.subset(masks["test"] & ~in_first),
            cheap,
            cheap,
        ),
    ]


def run_scenario(sc: Scenario, *, signal_set: str, family: str, seed: int) -> dict[str, Any]:
    """Fit on the scenario's training rows, then metrics per test k, averaged over test models."""
    rows = build_rows(sc.train, small_models=sc.train_small, ks=TRAIN_KS, router_share=0.7, seed=seed)
    model = fit(mask_columns(rows.x, signal_set), rows.y, family=family, seed=seed)
    return test_metrics(
        lambda x: model.predict_proba(mask_columns(x, signal_set))[:, 1], sc.test, small=sc.test_small, seed=seed
    )


def compare(answers: Answers, *, signal_sets: Sequence[str], families: Sequence[str], seed: int) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for sc in scenarios(answers, seed=seed):
        for family in families:
            for s in signal_sets:
                report[f"{sc.name}/{family}/{s}"] = run_scenario(sc, signal_set=s, family=family, seed=seed)
                print(_line(f"{sc.name}/{family}/{s}", report[f"{sc.name}/{family}/{s}"]), flush=True)
    return report


def _line(name: str, result: dict[str, Any]) -> str:
    cells = [f"{result[f'k{k}']['mean']['apgr']:.3f}" for k in TEST_KS]
    m1 = result["k1"]["mean"]
    return f"| {name} | " + " | ".join(cells) + f" | {m1['ece']:.3f} | {m1['auc']:.3f} | {m1['oracle_apgr']:.3f} |"


def markdown(report: dict[str, Any]) -> str:
    head = "| scenario / family / signals | " + " | ".join(f"APGR k={k}" for k in TEST_KS)
    head += " | ECE k=1 | AUC k=1 | oracle APGR |\n|" + "---|" * (len(TEST_KS) + 4)
    return "\n".join([head, *(_line(name, r) for name, r in report.items())]) + "\n\nrandom APGR = 0.500\n"


def run_compare_scorer(args: argparse.Namespace) -> int:
    answers = load_scored_answers(
        Path(args.data), small=(), router=Path(args.router), sample=args.sample, seed=args.seed, large=args.large
    )
    report = compare(answers, signal_sets=args.signals, families=args.families, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare_scorer.json").write_text(json.dumps(report, indent=1))
    (out / "compare_scorer.md").write_text(markdown(report))
    print(markdown(report))
    return 0


__all__ = ["SIGNAL_SETS", "compare", "run_compare_scorer", "scenarios"]
