"""`cascade train evaluate --model DIR --from-nats [URL]`: a candidate router against the one in service,
on the held-back slice of the recorded traffic (training.traffic): the prompts neither was trained on.
A scorer folder is evaluated by training.scorer_stream instead."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from classifier import load_model
from services.core.errors import CascadeError
from services.core.settings import load_settings
from training.evaluation import evaluate_scores, format_report, prices_from_settings, score_prompts
from training.serving import serving_model
from training.traffic import held_back_from, read_pairs


def run_evaluate_from_nats(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_evaluate(args))
    except CascadeError as exc:
        print(f"cascade train evaluate: {exc}", file=sys.stderr)
        return 1


async def _evaluate(args: argparse.Namespace) -> int:
    from services.cli.export import parse_since

    settings = load_settings(args.config)
    candidate = load_model(args.model)
    small, large = candidate.card["pair"]
    since = parse_since(args.since) if args.since else None
    url = args.from_nats or settings.nats.client_url
    traffic, cover = await read_pairs(settings, url=url, since=since, small=small, large=large)
    with tempfile.TemporaryDirectory(prefix="cascade-evaluate-") as tmp:
        serving = await serving_model(settings, kind="router", cache=Path(tmp), candidate=candidate.version)
        models = [candidate] + ([serving] if serving else [])
        held = held_back_from(traffic, [m.card for m in models])
        print(f"{cover.line()}; held back from {' and '.join(m.version for m in models)}: {len(held)}")
        if len(held) == 0:
            raise ValueError("no traffic prompt with both labels is held back from the model(s); record more traffic")
        prices = prices_from_settings(settings, args.price)
        labels = held.labels(candidate.card["label"])
        reports = {
            m.version: evaluate_scores(data=held, scores=score_prompts(m, held), labels=labels, prices=prices)
            for m in models
        }
    report: dict[str, Any] = {
        "model_version": candidate.version,
        "data": [f"{url}/{settings.outcomes.stream}"],
        "held_back": candidate.card.get(
            "held_back", {"split": "test", "seed": candidate.card.get("split", {}).get("seed", 0)}
        ),
        **reports[candidate.version],
    }
    if serving:
        report["serving"] = {"version": serving.version, **_brief(reports[serving.version])}
    out = Path(args.out or (args.model if Path(args.model).is_dir() else Path(args.model).parent))
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    if serving:
        s = report["serving"]
        gain = report["apgr"] - s["apgr"]
        print(
            f"serving {serving.version}: APGR {s['apgr']:.3f}, ROC AUC {s['roc_auc']:.3f} (candidate gain {gain:+.3f})"
        )
    print(f"wrote {out / 'evaluation.json'}")
    return 0


def _brief(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.float64(metrics[k])) for k in ("apgr", "roc_auc", "cpt50", "cpt80", "cpt95")}
