"""`cascade train evaluate --model DIR --data FILE` and `cascade train calibrate --router-only`: a router
model on outcome files (held-out metrics; its own default threshold)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx

from classifier import RouterModel, load_model
from classifier.contract import CARD_FILE, ONNX_FILE
from classifier.thresholds import pick_threshold
from services.core.settings import load_settings
from training.data import PairData, load_pair, pair_for, pair_overrides, split_masks
from training.evaluation import evaluate_scores, format_report, plot_curves, prices_from_settings, score_prompts
from training.export import set_metadata
from training.metrics import routing_curve, threshold_table
from training.traffic import trained_sources


def held_out(*, model: RouterModel, args: argparse.Namespace, split: str) -> PairData:
    """Prompts of every --data file; for a file the model was trained on, only ``split``
    of the model's own prompt-id split, so no training prompt is ever scored."""
    overrides = pair_overrides(args.pair, small=args.small, large=args.large, files=args.data or [])
    trained_on = trained_sources(model.card)
    seed = int(model.card.get("split", {}).get("seed", 0))
    parts = []
    for path in map(Path, args.data):
        small, large = pair_for(path, overrides)
        data = load_pair(path, small=small, large=large)
        if path.stem in trained_on and args.split == "auto":
            data = data.subset(split_masks(data, seed=seed)[split])
        parts.append(data.frame)
    import pandas as pd

    return PairData(pd.concat(parts, ignore_index=True))


def run_evaluate(args: argparse.Namespace) -> int:
    if not args.data:
        raise ValueError("train evaluate --model needs --data FILE or --from-nats [URL]")
    model = load_model(args.model)
    data = held_out(model=model, args=args, split="test")
    scores = score_prompts(model, data)
    prices = prices_from_settings(load_settings(args.config), args.price)
    report = {
        "model_version": model.version,
        "data": [str(p) for p in args.data],
        "prices_usd_per_million_tokens": {k: vars(v) for k, v in prices.items()},
        **evaluate_scores(data=data, scores=scores, labels=data.labels(model.card["label"]), prices=prices),
    }
    out = Path(args.out or (args.model if Path(args.model).is_dir() else Path(args.model).parent))
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_curves(data=data, scores=scores, path=out / "quality_curve.png", title=f"router {model.version}")
    print(format_report(report))
    print(f"wrote {out / 'evaluation.json'} and {out / 'quality_curve.png'}")
    return 0


def parse_target(spec: str) -> dict[str, float]:
    key, sep, value = spec.partition("=")
    names = {"large-share": "large_share", "quality": "quality"}
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or key not in names or not 0.0 <= number <= 1.0:
        raise ValueError(f"--target wants large-share=X or quality=X with X in [0, 1], got {spec!r}")
    return {names[key]: number}


def run_calibrate_router(args: argparse.Namespace) -> int:
    if not args.model:
        raise ValueError("train calibrate --router-only needs --model DIR")
    target = parse_target(args.target)
    model = load_model(args.model)
    data = held_out(model=model, args=args, split="validation")
    curve = routing_curve(scores=score_prompts(model, data), small=data.small, large=data.large)
    table = threshold_table(curve)
    card = {**model.card, "threshold_table": table, "default_target": target}
    card["calibration_data"] = {"data": [str(p) for p in args.data], "prompts": len(data)}
    recalibrated = pick_threshold(table, **target)
    card["default_threshold"] = recalibrated
    onnx_model = onnx.load(str(model.path))
    set_metadata(onnx_model, card)
    tmp = model.path.with_suffix(".onnx.tmp")
    onnx.save(onnx_model, str(tmp))
    tmp.replace(model.path)
    card_path = model.path.parent / CARD_FILE
    if model.path.name == ONNX_FILE:
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    load_model(model.path.parent if card_path.exists() else model.path)
    print(f"threshold {recalibrated:.6f} for {args.target} on {len(data)} prompts; wrote {model.path}")
    return 0
