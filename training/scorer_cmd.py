"""`cascade train fit-scorer` and `cascade train evaluate-scorer`: the answer-confidence model."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from classifier.confidence.features import FEATURE_NAMES, GROUPS
from classifier.confidence.scorer import CARD_FILE, ONNX_FILE, SCHEMA_VERSION, ScorerConfidence, load_scorer
from training.export import set_metadata
from training.scorer_data import (
    LARGE,
    SIGNAL_SETS,
    SMALL_MODELS,
    TRAIN_KS,
    Answers,
    build_rows,
    load_scored_answers,
    mask_columns,
    split,
)
from training.scorer_eval import TEST_KS, plot_reliability, reliability, test_metrics
from training.scorer_fit import describe, fit, parity, to_onnx

ROUTER_SHARE = 0.7  # share of training rows that carry the router's score
MAX_PARITY = 1e-4
LABEL = "answer score >= 0.5 (the benchmark grader accepted the small tier's answer)"


def run_fit_scorer(args: argparse.Namespace) -> int:
    small = tuple(args.small or SMALL_MODELS)
    answers = load_scored_answers(
        Path(args.data), small=small, router=Path(args.router), sample=args.sample, seed=args.seed
    )
    masks = split(answers, seed=args.seed)
    train, test = answers.subset(masks["train"]), answers.subset(masks["test"])
    rows = build_rows(
        train, small_models=small, pool=SMALL_MODELS, ks=TRAIN_KS, router_share=ROUTER_SHARE, seed=args.seed
    )
    model = fit(mask_columns(rows.x, args.signals), rows.y, family="logreg", seed=args.seed)
    metrics = test_metrics(lambda x: model.predict_proba(x)[:, 1], test, small=small, seed=args.seed)
    onx = to_onnx(model)
    diff = parity(onx, model, _parity_rows(test, small, args.seed))
    if diff > MAX_PARITY:
        raise ValueError(f"ONNX scorer differs from the fitted model by {diff:.2e} > {MAX_PARITY}")
    card = _card(args, small=small, counts={k: int(v.sum()) for k, v in masks.items()}, rows=len(rows.y))
    card.update(metrics={"test": metrics}, parity_max_abs_diff=diff, **describe(model))
    card = _write(onx, card, Path(args.out))
    k1 = metrics["k1"]["mean"]
    print(
        f"wrote {Path(args.out) / ONNX_FILE} version {card['version']}: test (k=1 other, mean over {len(small)} small "
        f"models) APGR {k1['apgr']:.3f}, AUC {k1['auc']:.3f}, ECE {k1['ece']:.3f}; ONNX parity max |diff| {diff:.1e}"
    )
    return 0


def _parity_rows(test: Answers, small: Sequence[str], seed: int) -> np.ndarray:
    x = build_rows(test, small_models=small, pool=SMALL_MODELS, ks=[0, 2], router_share=0.5, seed=seed).x[:2000]
    # Half the rows get synthetic logprob features, so the prior's weights are checked too.
    rng = np.random.default_rng(seed)
    lp = [FEATURE_NAMES.index(n) for n in GROUPS["logprob"]]
    x[::2, lp[0]] = 1.0
    x[::2, lp[1] : lp[-1] + 1] = rng.normal(0.0, 1.0, size=(len(x[::2]), len(lp) - 1))
    return x


def _card(args: argparse.Namespace, *, small: Sequence[str], counts: dict[str, int], rows: int) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "version": "",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "family": "logreg",
        "signal_set": {args.signals: list(SIGNAL_SETS[args.signals])},
        "label": LABEL,
        "feature_names": list(FEATURE_NAMES),
        "feature_groups": {g: list(n) for g, n in GROUPS.items()},
        "training_data": [str(args.data)],
        "small_models": list(small),
        "large_model": LARGE,
        "others_pool": list(SMALL_MODELS),
        "train_ks": list(TRAIN_KS),
        "router_share": ROUTER_SHARE,
        "router_model": str(args.router),
        "sample": args.sample,
        "split": {"by": "source + prompt_id (training.data.split_masks)", "seed": args.seed, **counts},
        "training_rows": rows,
        "rebuild_command": "cascade train " + shlex.join(sys.argv[sys.argv.index("fit-scorer") :])
        if "fit-scorer" in sys.argv
        else "",
    }


def _write(onx: onnx.ModelProto, card: dict[str, Any], out: Path) -> dict[str, Any]:
    digest = hashlib.sha256(onx.graph.SerializeToString()).hexdigest()[:12]
    card = {**card, "version": f"scorer-{card['created_at'][:10].replace('-', '')}.{digest}"}
    set_metadata(onx, {k: card[k] for k in ("schema_version", "version", "feature_names", "created_at", "label")})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".staging-") as staging:
        onnx.save(onx, str(Path(staging) / ONNX_FILE))
        (Path(staging) / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for name in (ONNX_FILE, CARD_FILE):
            shutil.move(str(Path(staging) / name), str(out / name))
    return card


def run_evaluate_scorer(args: argparse.Namespace) -> int:
    scorer = load_scorer(args.model)
    small = tuple(args.small or SMALL_MODELS)
    seed = int(scorer.card.get("split", {}).get("seed", 0))
    answers = _held_out(scorer, args, small=small, seed=seed)
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


def _held_out(scorer: ScorerConfidence, args: argparse.Namespace, *, small: Sequence[str], seed: int) -> Answers:
    """The --data answers; for the file the scorer was trained on (--split auto), its test prompts only."""
    answers = load_scored_answers(Path(args.data), small=small, router=Path(args.router), sample=None, seed=0)
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
        rows = build_rows(answers, small_models=small, pool=SMALL_MODELS, ks=[k], router_share=1.0, seed=seed + 1)
        curves[f"k={k} others"] = reliability(scorer.score_features(rows.x), rows.y)
    return curves
