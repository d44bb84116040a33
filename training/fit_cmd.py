"""`cascade train fit`: data -> fitted model -> ONNX (parity-checked) -> model dir."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.settings import load_settings
from training.data import PairData, load_files, pair_for, pair_overrides, sample, split_masks
from training.evaluation import evaluate_scores, prices_from_settings
from training.fit import check_parity, fit, make_card, write_model


def load_data(args: argparse.Namespace) -> tuple[PairData, dict[str, tuple[str, str]]]:
    overrides = pair_overrides(args.pair, small=args.small, large=args.large, files=args.data or [])
    paths = [Path(p) for p in args.data or []]
    pairs = {p.stem: pair_for(p, overrides) for p in paths}
    data = load_files(paths, overrides=overrides)
    if getattr(args, "sample", None):
        data = sample(data, n=args.sample, seed=args.seed)
    return data, pairs


def run_fit(args: argparse.Namespace) -> int:
    if args.from_nats is not None:
        from training.fit_stream import run_fit_from_nats

        return run_fit_from_nats(args)
    if args.durable or args.since:
        raise ValueError("--durable and --since read the outcome stream: add --from-nats [URL]")
    if not args.data:
        raise ValueError("train fit needs --data FILE, --from-nats [URL] or both")
    data, pairs = load_data(args)
    extra = {"training_data": [str(p) for p in args.data]}
    fit_and_write(args, data=data, pair=pairs[Path(args.data[0]).stem], pairs=pairs, extra=extra)
    return 0


def fit_and_write(
    args: argparse.Namespace,
    *,
    data: PairData,
    pair: tuple[str, str],
    pairs: dict[str, tuple[str, str]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Split by prompt id, fit, evaluate, write DIR/router.onnx + card (parity-checked); the card."""
    steps = tqdm(total=5, desc="fit", unit="step", disable=args.quiet)
    masks = split_masks(data, seed=args.seed)
    train, val, test = (data.subset(masks[k]) for k in ("train", "validation", "test"))
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"too few prompts to split: train {len(train)}, validation {len(val)}, test {len(test)}")
    steps.update()
    steps.set_postfix_str(f"fitting {args.features}/{args.family} on {len(train)} prompts")
    fitted = fit(
        texts=train.prompts,
        labels=train.labels(args.label),
        feature_set=args.features,
        family=args.family,
        seed=args.seed,
    )
    steps.update()
    val_scores, test_scores = fitted.score(val.prompts), fitted.score(test.prompts)
    settings = load_settings(getattr(args, "config", None))
    metrics = evaluate_scores(
        data=test, scores=test_scores, labels=test.labels(args.label), prices=prices_from_settings(settings)
    )
    steps.update()
    extra = {
        "pairs": {stem: list(p) for stem, p in pairs.items()},
        **extra,
        "training_sources": sorted(set(data.frame["source"])),
        "split": {"by": "prompt_id", "seed": args.seed, "train": len(train), "validation": len(val), "test": len(test)},
        "metrics": {"test": metrics},
        "rebuild_command": "cascade train " + shlex.join(sys.argv[sys.argv.index("fit") :])
        if "fit" in sys.argv
        else "",
    }
    card = make_card(fitted=fitted, pair=pair, label=args.label, validation=val, scores=val_scores, extra=extra)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".staging-") as staging:
        card = write_model(model=fitted.to_onnx(), card=card, out_dir=Path(staging))
        steps.update()
        diff = check_parity(fitted=fitted, onnx_path=Path(staging) / ONNX_FILE, texts=test.prompts)
        out.mkdir(parents=True, exist_ok=True)
        for name in (ONNX_FILE, CARD_FILE):
            shutil.move(str(Path(staging) / name), str(out / name))
    steps.update()
    steps.close()
    print(
        f"wrote {out / ONNX_FILE} version {card['version']}: test AUC {metrics['roc_auc']:.3f}, "
        f"APGR {metrics['apgr']:.3f} (random {metrics['random']['apgr']:.3f}, oracle "
        f"{metrics['oracle']['apgr']:.3f}); ONNX parity max |diff| {diff:.1e}"
    )
    return card
