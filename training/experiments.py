"""`cascade train compare`: feature sets x model families, in-distribution and cross-dataset.

In-distribution: split each file by prompt id, fit on its train split, score its test split.
Cross-dataset: fit on every prompt of the other files (each with its own pair), score every
prompt of the held-out file. Each exportable combination is also exported to ONNX (parity-
checked) and timed on one ~500- and one ~5,000-token prompt, single-threaded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from classifier import load_model
from classifier.contract import ONNX_FILE
from training.data import PairData, load_pair, pair_for, pair_overrides, sample, split_masks
from training.fit import Fitted, ParityError, check_parity, fit, make_card, write_model
from training.metrics import apgr, roc_auc, routing_curve


def _score(fitted: Fitted, data: PairData, label: str) -> dict[str, float]:
    scores = fitted.score(data.prompts)
    curve = routing_curve(scores=scores, small=data.small, large=data.large)
    return {"apgr": apgr(curve), "auc": roc_auc(scores=scores, labels=data.labels(label))}


def _fit(data: PairData, args: argparse.Namespace, fs: str, family: str) -> Fitted:
    return fit(texts=data.prompts, labels=data.labels(args.label), feature_set=fs, family=family, seed=args.seed)


def _latency(fitted: Fitted, data: PairData, label: str, long_texts: dict[int, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        card = make_card(
            fitted=fitted, pair=("s", "l"), label=label, validation=data, scores=fitted.score(data.prompts), extra={}
        )
        write_model(model=fitted.to_onnx(), card=card, out_dir=Path(tmp))
        try:
            check_parity(fitted=fitted, onnx_path=Path(tmp) / ONNX_FILE, texts=data.prompts[:300])
        except ParityError as exc:
            return {"exportable": False, "why": str(exc)}
        model = load_model(Path(tmp) / ONNX_FILE)
        out: dict[str, Any] = {"exportable": True, "onnx_mb": (Path(tmp) / ONNX_FILE).stat().st_size / 2**20}
        for tokens, text in long_texts.items():
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                model.score([text])
                times.append(time.perf_counter() - t0)
            out[f"p99_ms_{tokens}"] = float(np.percentile(times[20:], 99) * 1e3)
        return out


def long_prompts(data: PairData, tokens: tuple[int, ...] = (500, 5000)) -> dict[int, str]:
    """Real prompts joined to about ``tokens`` tokens (4 characters a token)."""
    joined = "\n\n".join(data.prompts[:2000])
    return {n: joined[: n * 4] for n in tokens}


def run_compare(args: argparse.Namespace) -> int:
    overrides = pair_overrides(args.pair, small=args.small, large=args.large, files=args.data or [])
    files = {}
    for path in map(Path, args.data):
        small, large = pair_for(path, overrides)
        files[path.stem] = load_pair(path, small=small, large=large)
    if args.sample:
        files = {k: sample(v, n=args.sample, seed=args.seed) for k, v in files.items()}
    combos = list(itertools.product(args.features, args.families))
    texts = long_prompts(next(iter(files.values())))
    rows = []
    bar = tqdm(total=len(combos) * (2 * len(files) + 1), desc="compare")
    for fs, family in combos:
        row: dict[str, Any] = {"features": fs, "family": family, "in_dist": {}, "cross": {}}
        for name, data in files.items():
            masks = split_masks(data, seed=args.seed)
            row["in_dist"][name] = _score(
                _fit(data.subset(masks["train"]), args, fs, family), data.subset(masks["test"]), args.label
            )
            bar.update()
        for name, held in files.items():
            rest = PairData(pd.concat([d.frame for k, d in files.items() if k != name], ignore_index=True))
            fitted = _fit(rest, args, fs, family)
            row["cross"][name] = _score(fitted, held, args.label)
            bar.update()
        row["latency"] = _latency(fitted, held, args.label, texts)
        bar.update()
        rows.append(row)
        tqdm.write(markdown_row(row, list(files)))
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(
        json.dumps({"label": args.label, "seed": args.seed, "rows": rows}, indent=2) + "\n"
    )
    table = markdown_table(rows, list(files))
    (out / "compare.md").write_text(table + "\n")
    print(table)
    return 0


def markdown_table(rows: list[dict[str, Any]], names: list[str]) -> str:
    head = " | ".join([f"ID {n}" for n in names] + [f"cross {n}" for n in names])
    lines = [
        f"| features | family | {head} | ID mean | cross mean | p99 ms @500 / @5000 tok | ONNX MB |",
        "|" + "---|" * (2 * len(names) + 6),
    ]
    return "\n".join(lines + [markdown_row(r, names) for r in rows])


def markdown_row(row: dict[str, Any], names: list[str]) -> str:
    def cell(m: dict[str, float]) -> str:
        return f"{m['apgr']:.3f} ({m['auc']:.3f})"

    ind = [row["in_dist"][n] for n in names]
    cross = [row["cross"][n] for n in names]
    lat = row.get("latency", {})
    timing = f"{lat['p99_ms_500']:.2f} / {lat['p99_ms_5000']:.2f}" if lat.get("exportable") else "no ONNX parity"
    size = f"{lat['onnx_mb']:.1f}" if lat.get("exportable") else "-"
    mean_id = np.mean([m["apgr"] for m in ind])
    mean_cross = np.mean([m["apgr"] for m in cross])
    cells = " | ".join(cell(m) for m in ind + cross)
    return f"| {row['features']} | {row['family']} | {cells} | {mean_id:.3f} | {mean_cross:.3f} | {timing} | {size} |"
