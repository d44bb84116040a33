"""Argument parsers for `cascade train ...` and `cascade classify` (wired in by services/cli)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.core.settings import DEFAULT_ROUTER_MODEL

# training.data comes first: it needs pandas, so on a base install this import fails before any other
# training module is loaded (services.cli then offers `train` as "needs the train extra").
from training.data import DEFAULT_PAIRS, LABELS
from training.dispatch import calibrate_command, dispatch, evaluate_command, from_nats, lazy
from training.featuresets import FAMILIES, FEATURE_SETS


def _add_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", action="append", required=required, metavar="FILE", help="outcome parquet file; repeat")
    p.add_argument("--small", help="small-tier model name for every --data file")
    p.add_argument("--large", help="large-tier model name for every --data file")
    p.add_argument(
        "--pair",
        action="append",
        metavar="FILE=SMALL,LARGE",
        help="(small, large) pair for one file, by file name or stem; the shipped files have defaults: "
        + "; ".join(f"{stem}={s},{lg}" for stem, (s, lg) in DEFAULT_PAIRS.items()),
    )


def _add_stream_args(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument(
        "--from-nats",
        nargs="?",
        const="",
        metavar="URL",
        help=f"{what} labelled traffic from the outcome stream (training.labels) at URL (default: the "
        "config's nats.url); replayed prompts keep their benchmark id, so the held-back split matches the file's",
    )
    p.add_argument("--since", metavar="TIME", help="with --from-nats: events from this ISO time or age (30m, 7d)")
    if not any(a.dest == "config" for a in p._actions):
        p.add_argument("--config", type=Path, help="YAML config: NATS URL, stream, tiers (default: built-in)")


def _add_durable_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--durable",
        metavar="NAME",
        help="with --from-nats: read only the events this durable consumer has not acknowledged; they are "
        "acknowledged after the model is written, given back if the fit fails (default: the whole stream, "
        "nothing acknowledged)",
    )


def _add_split_arg(p: argparse.ArgumentParser, held_out: str) -> None:
    p.add_argument(
        "--split",
        choices=["auto", "all"],
        default="auto",
        help=f"auto: for a file the model was trained on, use only its {held_out} prompts "
        "(the model's own prompt-id split); all: every prompt",
    )


def _add_policy_args(p: argparse.ArgumentParser) -> None:
    """Options of the policy replay shared by `evaluate --policy` and the joint `calibrate`."""
    p.add_argument("--config", type=Path, help="YAML config: tier prices, router, escalation (default: built-in)")
    p.add_argument("--second", help="second-opinion model name (mmlu_pro default: Meta-Llama-3_1-8B-Instruct)")
    p.add_argument(
        "--tiers",
        metavar="A,B,C",
        help="replay a cascade over these models, cheapest first (router.tiers of the --config, whose prices "
        "are used in order): the router's cuts pick the starting tier, an unsure answer climbs one step; "
        "with --second, a parallel second opinion on the cheapest tier's answer. Calibration: one router cut "
        "x per-step escalation thresholds (a simpler search than the two-tier joint one)",
    )
    p.add_argument(
        "--confidence", metavar="NAME", help="confidence model by registry name (default: escalation.confidence)"
    )
    p.add_argument(
        "--confidence-model", type=Path, metavar="DIR", help="its files (default: escalation.confidence_model)"
    )
    p.add_argument("--categories", metavar="A,B", help="only these categories (MMLU-Pro subtasks)")
    p.add_argument("--holdout-categories", metavar="A,B", help="leave these categories out")
    p.add_argument("--sample", type=int, metavar="N", help="only N random prompts of the split (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed for --sample and the bootstrap (default: 0)")
    p.add_argument("--small-tps", type=float, default=80.0, help="assumed small-tier decoding tokens/s (default: 80)")
    p.add_argument(
        "--second-tps", type=float, default=80.0, help="assumed second-opinion decoding tokens/s (default: 80)"
    )
    p.add_argument(
        "--price",
        action="append",
        metavar="ROLE=IN,OUT",
        help="override the config's price (USD per million input,output tokens) of role small, second or large; "
        "default: tiers.<name>.price of router.small_tier, escalation.second_opinion.tier (else the small "
        "tier) and router.large_tier",
    )


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="router metrics (AUC, APGR, CPT, cost), or whole policies replayed (--policy)",
        description="Without --policy: score held-out prompts with a router model and report ROC AUC, APGR, "
        "CPT(50%), CPT(80%), CPT(95%) (as RouteLLM defines them) and the cost saving at 95% of the large "
        "tier's quality, beside a random and an oracle router; writes evaluation.json and quality_curve.png. "
        "With --policy: replay serving policies (cascade, route, small, large, random) on recorded answers of "
        "the test prompts, exactly as the gateway applies them, and report quality, quality relative to the "
        "large tier, cost per 1,000 requests, large-tier share, second-opinion share and added latency; "
        "writes policies.json and policies.png. Token counts are estimated as characters/4; answers without "
        "a recorded response count 256 output tokens.",
    )
    p.add_argument("--model", metavar="DIR", help="router model dir or .onnx file (--policy default: router.model)")
    _add_data_args(p, required=False)
    _add_split_arg(p, "test")
    p.add_argument(
        "--policy",
        action="append",
        choices=["cascade", "route", "small", "large", "random"],
        help="replay this policy; repeat (random escalates the cascade's large share at random)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="the cascade's policy file (default: escalation.calibration if it exists, else the config's thresholds)",
    )
    _add_policy_args(p)
    _add_stream_args(
        p,
        what="with --model: score the candidate and the model of its kind in service (the config's registry; "
        "router or answer scorer) on",
    )
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: the model dir)")
    p.set_defaults(func=dispatch(evaluate_command))


def _add_calibrate(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose router threshold, escalation threshold and second-opinion mode together for a target",
        description="Joint calibration: on the validation prompts, try every router threshold x second-opinion "
        "mode (never, parallel, when_unsure with a band) x escalation threshold and keep the policy meeting "
        "the target at the lowest cost: quality=X (cheapest keeping X of the large tier's quality), "
        "large-share=X (best quality with at most X of requests on the large tier) or cost=X (best quality "
        "at most X USD per 1,000 requests). Reports what it does on the test prompts with 95% bootstrap "
        "intervals and writes the policy file the gateway and router read. --router-only: the old "
        "calibration of the router model's own default threshold (rewrites its metadata and card).",
    )
    p.add_argument("--model", metavar="DIR", help="router model dir or .onnx file (default: router.model)")
    _add_data_args(p)
    _add_split_arg(p, "validation")
    p.add_argument("--target", required=True, metavar="quality=X|large-share=X|cost=X", help="calibration target")
    p.add_argument("--out", metavar="POLICY.json", help="policy file to write (default: escalation.calibration)")
    p.add_argument(
        "--second-opinion-modes",
        default="never,parallel,when_unsure",
        metavar="M,M",
        help="modes to consider (default: %(default)s)",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--router-only", action="store_true", help="only the router model's default threshold")
    _add_policy_args(p)
    p.set_defaults(func=dispatch(calibrate_command))


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="compare feature sets and model families in-distribution and cross-dataset",
        description="For every feature set x model family: in-distribution APGR/AUC (split inside each "
        "file) and cross-dataset APGR/AUC (fit on the other files, test on each file in turn), plus "
        "ONNX size and single-prompt p99 latency. Writes compare.json and compare.md to --out.",
    )
    _add_data_args(p)
    p.add_argument("--features", nargs="+", default=sorted(FEATURE_SETS), choices=sorted(FEATURE_SETS))
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--label", default="large-wins", choices=sorted(LABELS), help="training label")
    p.add_argument("--seed", type=int, default=0, help="seed for splits and fits")
    p.add_argument("--sample", type=int, metavar="N", help="use only N random prompts per file")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write compare.json and compare.md")
    p.set_defaults(func=lazy("training.experiments", "run_compare"))


def _add_fit(sub: Any) -> None:
    p = sub.add_parser(
        "fit",
        help="fit a router model on outcome data and write DIR/router.onnx + model card",
        description="Fit a difficulty classifier on routing outcomes, export it to ONNX, check that the "
        "ONNX graph scores like the fitted model (|diff| <= 1e-4 on up to 1,000 test prompts) and "
        "write DIR/router.onnx and DIR/model_card.json. Split is by prompt id: 70% train, 15% "
        "validation (thresholds), 15% test (metrics).",
    )
    _add_data_args(p, required=False)
    _add_stream_args(p, what="fit on")
    _add_durable_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    # The defaults are the shipped router's settings (its card's rebuild_command), so a plain
    # `fit` on new data trains the kind of model that is in service; a unit test keeps them in step.
    p.add_argument(
        "--features", default="hand", choices=sorted(FEATURE_SETS), help="feature set (default: %(default)s)"
    )
    p.add_argument("--family", default="logreg", choices=FAMILIES, help="model family (default: %(default)s)")
    p.add_argument(
        "--label", default="large-wins", choices=sorted(LABELS), help="training label (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the fit (default: %(default)s)")
    p.add_argument("--sample", type=int, metavar="N", help="use only N random prompts (smoke tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=from_nats(("training.fit_cmd", "run_fit"), ("training.fit_stream", "run_fit_from_nats")))


def _add_publish(sub: Any) -> None:
    p = sub.add_parser(
        "publish",
        help="publish a router or scorer to the model registry if it is not worse than the one in service",
        description="Upload a model folder (router.onnx or scorer.onnx, + model_card.json) to the config's "
        "model registry (router.registry_bucket on nats.url) and point its kind's 'latest' at it; routers "
        "(router.published: latest) and gateways (escalation.published: latest) switch to it at once. When "
        "a model of that kind is in service, both are scored on --data held out from both (router: APGR of "
        "routing; scorer: escalation APGR, mean over 0, 1 and 4 other answers) and the candidate is published "
        "only if its gain is at least --min-gain (0: not worse); a refusal is kept in the history. --force "
        "publishes without comparing and needs --reason, kept with --by in the registry. Exit status: 0 "
        "published (or already active), 3 refused by the gate, 1 error.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model folder (router.onnx or scorer.onnx)")
    p.add_argument("--config", type=Path, help="YAML config: NATS URL and registry bucket (default: built-in)")
    _add_data_args(p, required=False)
    _add_stream_args(
        p, what="compare on the held-back slice (router: also with --data; scorer: ROC AUC, instead of --data) of"
    )
    p.add_argument(
        "--sample", type=int, metavar="N", help="scorer gate: compare on N sampled prompts of --data (default: all)"
    )
    p.add_argument("--min-gain", type=float, default=0.0, help="gain needed to publish (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="publish without comparing (needs --reason)")
    p.add_argument("--reason", help="why, in words: kept in the publication record and the history")
    p.add_argument("--by", help="who publishes (default: the login name)")
    p.set_defaults(func=lazy("training.publish_cmd", "run_publish"))


# training.scorer_data.SIGNAL_SETS's names, spelled here so `--help` needs no pandas (a test checks).
SCORER_SIGNAL_SETS = ("text", "form", "agreement", "router", "all", "all-but-prompt", "agreement+form")


def _add_scorer_data_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=required,
        metavar="FILE",
        help="outcome parquet with full responses of several models per prompt (as ../shared/data/routing/mmlu_pro)",
    )
    p.add_argument(
        "--small",
        action="append",
        metavar="MODEL",
        help="small-tier model whose answers are scored; repeat (default: every model of the file but the large one)",
    )
    p.add_argument(
        "--large",
        metavar="MODEL",
        help="the model escalated to (default: the file's model with the best mean score)",
    )
    p.add_argument(
        "--router",
        default=str(DEFAULT_ROUTER_MODEL),
        metavar="DIR",
        help="router model whose score is the router signal (default: the shipped router)",
    )


def _add_fit_scorer(sub: Any) -> None:
    p = sub.add_parser(
        "fit-scorer",
        help="fit the answer-confidence scorer and write DIR/scorer.onnx + model card",
        description="Fit the answer-confidence model (standardised logistic regression over the --signals "
        "groups of agreement, answer-form, length, prompt, router and logprob features; logprob weights are "
        "a documented prior) on recorded answers, with 0, 1, 2 or 4 other answers per row drawn from the "
        "other cheap models (repeats stand in for samples) and the router score present on 70 percent of "
        "rows. Label: the answer's score >= 0.5. Split by prompt id (70/15/15, --seed). Exports ONNX with a "
        "parity check (|diff| <= 1e-4). With --from-nats: on the labelled answers of the outcome stream "
        "(each with the other answers the gateway judged it with; needs outcomes.store_answer_text and "
        "store_prompt_text), plus the --data file's rows when given; the held-back slice is recorded in the card.",
    )
    _add_scorer_data_args(p, required=False)
    _add_stream_args(p, what="fit on the answers of")
    _add_durable_arg(p)
    p.add_argument(
        "--label-sources",
        metavar="A,B",
        help="with --from-nats: which labels train (training.labels: replay, feedback, escalation, second_opinion; "
        "default: all but second_opinion, whose label is the agreement feature itself)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    p.add_argument(
        "--signals",
        default="agreement+form",
        choices=SCORER_SIGNAL_SETS,
        help="signal groups the model may use; the others get zero weight (default: %(default)s, the best "
        "escalation APGR or within 0.01 of it in every compare-scorer scenario: prompt, length and router "
        "features lower it)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the simulated others")
    p.add_argument("--sample", type=int, metavar="N", help="use only N random prompts (smoke tests)")
    p.set_defaults(
        func=from_nats(
            ("training.scorer_cmd", "run_fit_scorer"), ("training.scorer_stream", "run_fit_scorer_from_nats")
        )
    )


def _add_evaluate_scorer(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate-scorer",
        help="report APGR of escalation, AUC, ECE and a reliability curve for a scorer",
        description="Score held-out answers with a scorer model at 0, 1 and 4 other answers and report the "
        "APGR of escalating least-confident-first (small -> Llama-3.1-70B), ROC AUC and ECE, per small "
        "model and averaged; writes evaluation_scorer.json and reliability.png to --out.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="scorer model dir")
    _add_scorer_data_args(p)
    _add_split_arg(p, "test")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the report")
    p.set_defaults(func=lazy("training.scorer_cmd", "run_evaluate_scorer"))


def _add_compare_scorer(sub: Any) -> None:
    p = sub.add_parser(
        "compare-scorer",
        help="how each confidence signal set transfers: in-distribution, cross-model, cross-category",
        description="For each signal set (text, agreement, router, all) and family: escalation APGR at 0, 1 "
        "and 4 other answers and ECE, in-distribution, cross-model (train on Mistral-7B's answers, test on "
        "the other cheap models') and cross-category (train on 7 MMLU-Pro categories, test on the other 7). "
        "Writes compare_scorer.json and compare_scorer.md to --out.",
    )
    _add_scorer_data_args(p)
    p.add_argument(
        "--signals",
        nargs="+",
        default=list(SCORER_SIGNAL_SETS),
        choices=SCORER_SIGNAL_SETS,
    )
    p.add_argument("--families", nargs="+", default=["logreg"], choices=["logreg", "gbm"])
    p.add_argument("--seed", type=int, default=0, help="seed for splits, categories and simulated others")
    p.add_argument("--sample", type=int, metavar="N", help="use only N random prompts")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the report")
    p.set_defaults(func=lazy("training.scorer_compare", "run_compare_scorer"))


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `train` with its subcommands on an argparse subparsers object."""
    train = subparsers.add_parser(
        "train",
        help="fit, evaluate, calibrate and publish the router's difficulty classifier",
        description="Retraining CLI for the router's difficulty classifier.",
    )
    sub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    _add_fit(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_compare(sub)
    _add_publish(sub)
    _add_fit_scorer(sub)
    _add_evaluate_scorer(sub)
    _add_compare_scorer(sub)
    return train


def add_classify_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `classify`: JSON lines {"prompt": ...} on stdin -> {"score": ...} lines."""
    p = subparsers.add_parser(
        "classify",
        help='score JSON lines {"prompt": ...} from stdin with a router model',
        description='Read JSON lines {"prompt": "..."} on stdin and write {"score": ...} lines in the '
        "same order, scoring in batches.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="model dir or .onnx file")
    p.add_argument("--batch-size", type=int, default=64, help="prompts per session run")
    p.set_defaults(func=lazy("training.classify_cmd", "run_classify"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cascade", description="prompt-cascade training commands")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_parser(sub)
    add_classify_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
