"""`cascade train fit-scorer --data FILE` and `cascade train evaluate-scorer`: the answer-confidence model
on recorded answers of an outcome file (on the outcome stream: training.scorer_stream)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifier.confidence.scorer import ONNX_FILE, ScorerConfidence, load_scorer
from training.scorer_data import ROUTER_SHARE, TRAIN_KS, Answers, build_rows, load_scored_answers, mask_columns, split
from training.scorer_eval import TEST_KS, plot_reliability, reliability, test_metrics
from training.scorer_fit import base_card, checked_onnx, describe, fit, with_logprobs, write_scorer

LABEL = "answer score >= 0.5 (the benchmark grader accepted the small tier's answer)"


def run_fit_scorer(args: argparse.Namespace) -> int:
    if args.durable or args.since:
        raise ValueError("--durable and --since read the outcome stream: add --from-nats [URL]")
    if not args.data:
        raise ValueError("train fit-scorer needs --data FILE, --from-nats [URL] or both")
    answers = load_scored_answers(
        Path(args.data),
        small=tuple(args.small or ()),
        router=Path(args.router),
        sample=args.sample,
        seed=args.seed,
        large=args.large,
    )
    small = tuple(args.small or answers.pool)
    masks = split(answers, seed=args.seed)
    train, test = answers.subset(masks["train"]), answers.subset(masks["test"])
    rows = build_rows(train, small_models=small, ks=TRAIN_KS, router_share=ROUTER_SHARE, seed=args.seed)
    model = fit(mask_columns(rows.x, args.signals), rows.y, family="logreg", seed=args.seed)
    metrics = test_metrics(lambda x: model.predict_proba(x)[:, 1], test, small=small, seed=args.seed)
    onx, diff = checked_onnx(model, _parity_rows(test, small, args.seed))
    counts = {k: int(v.sum()) for k, v in masks.items()}
    card = base_card(signals=args.signals, label=LABEL, seed=args.seed, counts=counts, rows=len(rows.y))
    card.update(file_fields(args, answers, small=small))
    card.update(metrics={"test": metrics}, parity_max_abs_diff=diff, **describe(model))
    card = write_scorer(onx, card, Path(args.out))
    k1 = metrics["k1"]["mean"]
    print(
        f"wrote {Path(args.out) / ONNX_FILE} version {card['version']}: test (k=1 other, mean over {len(small)} small "
        f"models) APGR {k1['apgr']:.3f}, AUC {k1['auc']:.3f}, ECE {k1['ece']:.3f}; ONNX parity max |diff| {diff:.1e}"
    )
    return 0


def file_fields(args: argparse.Namespace, answers: Answers, *, small: Sequence[str]) -> dict[str, Any]:
    """What a scorer trained on a --data file records about it."""
    return {
        "training_data": [str(args.data)],
        "small_models": list(small),
        "large_model": answers.large,
        "others_pool": list(answers.pool),
        "train_ks": list(TRAIN_KS),
        "router_share": ROUTER_SHARE,
        "router_model": str(args.router),
        "sample": args.sample,
    }


def _parity_rows(test: Answers, small: Sequence[str], seed: int) -> np.ndarray:
    x = build_rows(test, small_models=small, ks=[0, 2], router_share=0.5, seed=seed).x[:2000]
    return with_logprobs(x, seed)


def run_evaluate_scorer(args: argparse.Namespace) -> int:
    scorer = load_scorer(args.model)
    seed = int(scorer.card.get("split", {}).get("seed", 0))
    answers = _held_out(scorer, args, seed=seed)
    small = tuple(args.small or answers.pool)
    metrics = test_metrics(scorer.score_features, answers, small=small, seed=seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = _reliability_curves(scorer, answers, small=small, seed=seed)
    plot_reliability(curves, out / "reliability.png")
    report = {"model_version": scorer.version, "data": str(args.data), "split": args.split, "metrics": metrics}
    (out / "evaluation_scorer.json").write_text(json.dumps({**report, "reliability": curves}, indent=1))
    _print_metrics(metrics)
    print(f"wrote {out / 'evaluation_scorer.json'} and {out / 'reliability.png'}")
    return 0


def _held_out(scorer: ScorerConfidence, args: argparse.Namespace, *, seed: int) -> Answers:
    """The --data answers; for the file the scorer was trained on (--split auto), its test prompts only."""
    answers = load_scored_answers(
        Path(args.data), small=tuple(args.small or ()), router=Path(args.router), sample=None, seed=0, large=args.large
    )
    trained_on = {Path(p).stem for p in scorer.card.get("training_data", [])}
    if Path(args.data).stem in trained_on and args.split == "auto":
        answers = answers.subset(split(answers, seed=seed)["test"])
    return answers


def _print_metrics(metrics: dict[str, Any]) -> None:
    for k in TEST_KS:
        m = metrics[f"k{k}"]["mean"]
        print(
            f"k={k} others: APGR {m['apgr']:.3f} (random {m['random_apgr']:.3f}, oracle {m['oracle_apgr']:.3f}), "
            f"AUC {m['auc']:.3f}, ECE {m['ece']:.3f}"
        )


def _reliability_curves(
    scorer: ScorerConfidence, answers: Answers, *, small: Sequence[str], seed: int
) -> dict[str, Any]:
    curves = {}
    for k in TEST_KS:
        rows = build_rows(answers, small_models=small, ks=[k], router_share=1.0, seed=seed + 1)
        curves[f"k={k} others"] = reliability(scorer.score_features(rows.x), rows.y)
    return curves
