"""`cascade train evaluate` and `cascade train calibrate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from classifier import RouterModel, load_model
from classifier.contract import CARD_FILE, ONNX_FILE
from classifier.thresholds import pick_threshold
from services.core.settings import load_settings
from training.data import PairData, load_pair, pair_for, pair_overrides, split_masks
from training.evaluation import evaluate_scores, plot_curves, prices_from_settings
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


def _scores(model: RouterModel, data: PairData, batch: int = 256) -> np.ndarray:
    prompts = data.prompts
    from tqdm import tqdm

    chunks = [model.score(prompts[i : i + batch]) for i in tqdm(range(0, len(prompts), batch), desc="score")]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.policy:
        if not args.data:
            raise ValueError("train evaluate --policy needs --data FILE (recorded answers to replay)")
        from training.policy_cmd import run_policy_evaluate

        return run_policy_evaluate(args)
    if not args.model:
        raise ValueError("train evaluate needs --model DIR (router metrics) or --policy NAME (policy replay)")
    if args.from_nats is not None:
        from training.eval_stream import run_evaluate_from_nats

        return run_evaluate_from_nats(args)
    if not args.data:
        raise ValueError("train evaluate --model needs --data FILE or --from-nats [URL]")
    model = load_model(args.model)
    data = held_out(model=model, args=args, split="test")
    scores = _scores(model, data)
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


def format_report(r: dict[str, Any]) -> str:
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


def run_calibrate(args: argparse.Namespace) -> int:
    if not args.router_only:
        from training.policy_cmd import run_policy_calibrate

        return run_policy_calibrate(args)
    if not args.model:
        raise ValueError("train calibrate --router-only needs --model DIR")
    target = parse_target(args.target)
    model = load_model(args.model)
    data = held_out(model=model, args=args, split="validation")
    curve = routing_curve(scores=_scores(model, data), small=data.small, large=data.large)
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
