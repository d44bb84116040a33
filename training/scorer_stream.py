"""`cascade train fit-scorer --from-nats [URL]` and `cascade train evaluate --model SCORER --from-nats`:
the answer scorer fitted on labelled traffic (training.scorer_traffic, plus an optional --data file),
and a candidate scorer against the one in service on the held-back slice of that traffic.

Which events a fit reads and when they are acknowledged: training.traffic.train_on_stream (as for
the router's `fit --from-nats`). The held-back slice is the ``test`` part of the (source, prompt id)
split with ``--seed``, recorded in the card; evaluate and the publish gate score on the answers of
the prompts held back from both scorers (ROC AUC: every held answer has a label, a large-tier score
only some).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from classifier.confidence.scorer import ONNX_FILE, load_scorer
from services.core.errors import CascadeError
from services.core.settings import CascadeSettings, load_settings
from training.data import PairData, split_masks
from training.scorer_data import (
    ROUTER_SHARE,
    TRAIN_KS,
    Rows,
    build_rows,
    concat_rows,
    load_scored_answers,
    mask_columns,
    split,
)
from training.scorer_eval import label_metrics
from training.scorer_fit import base_card, checked_onnx, describe, fit, with_logprobs, write_scorer
from training.scorer_traffic import DEFAULT_LABEL_SOURCES, TrafficRows, held_back_rows, label_sources, read_rows
from training.serving import serving_model
from training.traffic import (
    HELD_BACK_SPLIT,
    Labelled,
    held_back_record,
    stream_record,
    train_on_stream,
)

LABEL = "the answer's label from traffic >= 0.5 (training.labels: replay score, feedback, escalation agreement)"


def run_fit_scorer_from_nats(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_fit(args))
    except (CascadeError, ValueError, OSError) as exc:
        print(f"cascade train fit-scorer: {exc}", file=sys.stderr)
        return 1


async def _fit(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = args.from_nats or settings.nats.client_url
    sources = label_sources(args.label_sources)

    def train(labelled: Labelled) -> dict[str, Any]:
        return _fit_labelled(args, labelled, settings=settings, url=url, sources=sources)

    await train_on_stream(args, settings, url=url, name="cascade-train-fit-scorer", train=train)
    return 0


def _fit_labelled(
    args: argparse.Namespace, labelled: Labelled, *, settings: CascadeSettings, url: str, sources: tuple[str, ...]
) -> dict[str, Any]:
    traffic = read_rows(labelled, settings, sources, url=url)
    if len(traffic) == 0:
        raise ValueError("no labelled answer below the top tier in the stream (nothing new on the durable?)")
    masks = split_masks(PairData(traffic.keys), seed=args.seed)
    train, test = traffic.subset(masks["train"]), traffic.subset(masks[HELD_BACK_SPLIT])
    parts, extra = [train], _no_file(traffic)
    if args.data:
        file_rows, extra = _file_rows(args, traffic)
        parts.insert(0, file_rows)
    rows = concat_rows(parts)
    if len(set(rows.y.tolist())) < 2:
        raise ValueError(
            f"{len(rows.y)} training answers, all with the same label: record more traffic or merge --data"
        )
    model = fit(mask_columns(rows.x, args.signals), rows.y, family="logreg", seed=args.seed)
    metrics = label_metrics(model.predict_proba(test.x)[:, 1], labels=test.y, small=test.small, large=test.large)
    onx, diff = checked_onnx(model, with_logprobs((test.x if len(test.y) else rows.x)[:2000], args.seed))
    counts = {k: int(v.sum()) for k, v in masks.items()}
    card = base_card(signals=args.signals, label=LABEL, seed=args.seed, counts=counts, rows=len(rows.y))
    stream = settings.outcomes.stream
    card.update(
        training_data=[*extra.pop("training_data"), f"{url}/{stream}"],
        training_stream={**stream_record(args, labelled, url=url, stream=stream), "answers": len(traffic)},
        held_back=held_back_record(args.seed),
        label_sources=list(sources),
        **extra,
        metrics={"test": metrics},
        parity_max_abs_diff=diff,
        **describe(model),
    )
    card = write_scorer(onx, card, Path(args.out))
    print(f"wrote {Path(args.out) / ONNX_FILE} version {card['version']}: {_line(metrics)}")
    return card


def _no_file(traffic: TrafficRows) -> dict[str, Any]:
    return {
        "training_data": [],
        "training_sources": sorted(set(traffic.keys["source"])),
        "small_models": list(traffic.small_models),
        "large_model": traffic.large_model,
    }


def _file_rows(args: argparse.Namespace, traffic: TrafficRows) -> tuple[Rows, dict[str, Any]]:
    """The --data file's training rows (its train split, as `fit-scorer --data`) and what the card says."""
    answers = load_scored_answers(
        Path(args.data), small=tuple(args.small or ()), router=Path(args.router), sample=args.sample, seed=args.seed
    )
    small = tuple(args.small or answers.pool)
    train = answers.subset(split(answers, seed=args.seed)["train"])
    rows = build_rows(train, small_models=small, ks=TRAIN_KS, router_share=ROUTER_SHARE, seed=args.seed)
    base = _no_file(traffic)
    return rows, {
        "training_data": [str(args.data)],
        "training_sources": sorted({*base["training_sources"], Path(args.data).stem}),
        "small_models": list(dict.fromkeys([*traffic.small_models, *small])),
        "large_model": traffic.large_model or answers.large,
        "router_model": str(args.router),
    }


def _line(m: dict[str, Any]) -> str:
    text = f"{m['n']} held-back answers: AUC {m['auc']:.3f}, ECE {m['ece']:.3f}"
    if "escalation" in m:
        e = m["escalation"]
        text += (
            f"; escalation APGR {e['apgr']:.3f} on the {e['n']} with a large-tier label "
            f"(random {e['random_apgr']:.3f}, oracle {e['oracle_apgr']:.3f})"
        )
    return text


def run_evaluate_scorer_from_nats(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_evaluate(args))
    except (CascadeError, ValueError) as exc:
        print(f"cascade train evaluate: {exc}", file=sys.stderr)
        return 1


async def _evaluate(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    candidate = load_scorer(args.model)
    sources = tuple(candidate.card.get("label_sources") or DEFAULT_LABEL_SOURCES)
    url = args.from_nats or settings.nats.client_url
    with tempfile.TemporaryDirectory(prefix="cascade-evaluate-") as tmp:
        serving = await serving_model(settings, kind="scorer", cache=Path(tmp), candidate=candidate.version)
    models = [candidate] + ([serving] if serving else [])
    held = await held_back_rows(settings, url=url, since=args.since, cards=[m.card for m in models], sources=sources)
    print(f"held back from {' and '.join(m.version for m in models)}: {len(held)} answers")
    if len(held) == 0:
        raise ValueError("no labelled traffic answer is held back from the scorer(s); record more traffic")
    r = held.rows
    reports = {
        m.version: label_metrics(m.score_features(r.x), labels=r.y, small=r.small, large=r.large) for m in models
    }
    report: dict[str, Any] = {
        "model_version": candidate.version,
        "data": [f"{url}/{settings.outcomes.stream}"],
        "held_back": candidate.card.get("held_back", held_back_record(int(candidate.card["split"]["seed"]))),
        "metrics": reports[candidate.version],
    }
    print(f"candidate {candidate.version}: {_line(reports[candidate.version])}")
    if serving:
        report["serving"] = {"version": serving.version, "metrics": reports[serving.version]}
        gain = reports[candidate.version]["auc"] - reports[serving.version]["auc"]
        print(f"serving {serving.version}: {_line(reports[serving.version])} (candidate AUC gain {gain:+.3f})")
    out = Path(args.out or args.model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation_scorer.json").write_text(json.dumps(report, indent=2, default=_json) + "\n")
    print(f"wrote {out / 'evaluation_scorer.json'}")
    return 0


def _json(value: Any) -> Any:
    return float(value) if isinstance(value, np.floating) else str(value)
