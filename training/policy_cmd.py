"""`cascade train evaluate --policy ...` and `cascade train calibrate` (joint): whole two-tier serving
policies replayed on recorded answers of held-out prompts (N tiers, --tiers: training.ladder_cmd)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from classifier import RouterModel, load_model
from classifier.confidence import ConfidenceModel
from classifier.policy import CalibratedPolicy, load_policy, save_policy
from services.core.settings import CascadeSettings, load_settings
from training.evaluation import prices_from_settings
from training.policy_calibrate import Target, bootstrap, calibrate, parse_policy_target
from training.policy_data import (
    filter_categories,
    held_out_mask,
    load_confidence_model,
    load_replay,
    parse_categories,
    route_threshold,
    sample_frame,
    triple_for,
)
from training.policy_report import format_expected, format_table, write_report
from training.policy_signals import Speeds, build_replay, model_card, split_seeds
from training.policy_sim import Replay, simulate_all, simulate_cascade


@dataclass(frozen=True, kw_only=True)
class Setup:
    """Everything a policy command reads once: config, models and the filtered data."""

    settings: CascadeSettings
    router: RouterModel
    confidence: ConfidenceModel
    files: list[tuple[Path, pd.DataFrame, list[int]]]  # path, prompts, split seeds
    models: dict[str, str]

    def replay(self, args: argparse.Namespace, *, split: str) -> tuple[Replay, int]:
        """Replay of the ``split`` prompts (every prompt for "all"), sampled per ``--sample``."""
        parts = [f if split == "all" else f[held_out_mask(f, split=split, seeds=s)] for _, f, s in self.files]
        frame = sample_frame(pd.concat(parts, ignore_index=True), n=args.sample, seed=args.seed)
        if frame.empty:
            raise ValueError(f"no {split} prompts left after the filters")
        prices = prices_from_settings(self.settings, args.price)
        speeds = Speeds(small=args.small_tps, second=args.second_tps)
        return build_replay(frame, router=self.router, confidence=self.confidence, prices=prices, speeds=speeds), len(
            frame
        )


def _setup(args: argparse.Namespace) -> Setup | None:
    settings = load_settings(args.config)
    confidence = load_confidence_model(args.confidence, args.confidence_model, settings)
    if confidence is None:
        return None
    model, conf_path = confidence
    router = load_model(args.model or settings.router.model)
    files, models = _load_files(args, cards=[router.card, model_card(model, conf_path)])
    return Setup(settings=settings, router=router, confidence=model, files=files, models=models)


def _load_files(
    args: argparse.Namespace, *, cards: list[dict[str, Any]]
) -> tuple[list[tuple[Path, pd.DataFrame, list[int]]], dict[str, str]]:
    files, models = [], {}
    for path in map(Path, args.data):
        triple = triple_for(path, small=args.small, second=args.second, large=args.large)
        keep, drop = parse_categories(args.categories), parse_categories(args.holdout_categories)
        frame = filter_categories(load_replay(path, triple), keep=keep, drop=drop)
        files.append((path, frame, split_seeds(cards, stem=path.stem)))
        models = triple.names()
    return files, models


def cascade_policy(
    args: argparse.Namespace, settings: CascadeSettings, router: RouterModel
) -> tuple[CalibratedPolicy, str]:
    """The cascade as the gateway would run it: a calibrated policy file, else the config's values."""
    path = args.calibration or settings.escalation.calibration
    if path is not None and (args.calibration or Path(path).is_file()):
        return load_policy(path), str(path)
    so = settings.escalation.second_opinion
    policy = CalibratedPolicy(
        router_threshold=route_threshold(settings, router),
        escalation_threshold=settings.escalation.min_confidence,
        second_opinion=so.mode,
        unsure_low=so.unsure_low,
        unsure_high=so.unsure_high,
    )
    return policy, "config"


def run_policy_evaluate(args: argparse.Namespace) -> int:
    setup = _setup(args)
    if setup is None:
        return 1
    replay, n = setup.replay(args, split="test" if args.split == "auto" else "all")
    cascade, source = cascade_policy(args, setup.settings, setup.router)
    _warn_stale(cascade, setup)
    route_t = route_threshold(setup.settings, setup.router)
    policies = list(dict.fromkeys(args.policy))
    outcomes = simulate_all(replay, policies=policies, cascade=cascade, route_threshold=route_t)
    meta = _meta(args, setup, replay, n) | {
        "cascade_policy": {"source": source, **vars(cascade)},
        "route_threshold": route_t,
    }
    out = Path(args.out or "policy-evaluation")
    report = write_report(out=out, replay=replay, outcomes=outcomes, meta=meta, cascade=cascade)
    print(format_table(report))
    print(f"wrote {out / 'policies.json'} and {out / 'policies.png'}")
    return 0


def _warn_stale(policy: CalibratedPolicy, setup: Setup) -> None:
    versions = {"router": (policy.router_model_version, setup.router.version)}
    versions["confidence"] = (policy.confidence_model_version, setup.confidence.version)
    for what, (calibrated, running) in versions.items():
        if calibrated and calibrated != running:
            print(f"warning: policy calibrated for {what} model {calibrated}, replaying {running}", file=sys.stderr)


def _meta(args: argparse.Namespace, setup: Setup, replay: Replay, n: int) -> dict[str, Any]:
    return {
        "data": [str(p) for p in args.data],
        "n_prompts": n,
        "categories": args.categories,
        "holdout_categories": args.holdout_categories,
        "split_seeds": {p.stem: s for p, _, s in setup.files},
        "models": setup.models,
        "router_model_version": setup.router.version,
        "confidence": {"name": setup.confidence.name, "version": setup.confidence.version},
        "prices_usd_per_million_tokens": {
            k: vars(v) for k, v in prices_from_settings(setup.settings, args.price).items()
        },
        "latency_model": {
            "router_ms_median": replay.router_ms,
            "confidence_ms_median": replay.confidence_ms,
            "small_tokens_per_s": args.small_tps,
            "second_tokens_per_s": args.second_tps,
            "tokens": "characters / 4",
        },
    }


def run_policy_calibrate(args: argparse.Namespace) -> int:
    target = parse_policy_target(args.target)
    setup = _setup(args)
    if setup is None:
        return 1
    out = args.out or setup.settings.escalation.calibration
    if out is None:
        raise ValueError("give --out POLICY.json (or set escalation.calibration in the config)")
    validation, n_val = setup.replay(args, split="validation")
    policy, on_validation = calibrate(validation, target=target, modes=set(args.second_opinion_modes.split(",")))
    test, n_test = setup.replay(args, split="test")
    policy = _stamped(policy, args=args, setup=setup, target=target, test=test)
    save_policy(policy, out)
    _print_calibration(policy, on_validation, n_val=n_val, n_test=n_test, setup=setup)
    print(f"wrote {out}")
    return 0


def _stamped(
    policy: CalibratedPolicy, *, args: argparse.Namespace, setup: Setup, target: Target, test: Replay
) -> CalibratedPolicy:
    """The chosen policy with what it is expected to do on ``test`` and where it came from."""
    expected = bootstrap(simulate_cascade(test, policy), q_large=test.q_large, resamples=args.resamples, seed=args.seed)
    return replace(
        policy,
        router_model_version=setup.router.version,
        confidence_model_version=setup.confidence.version,
        target=target.spec,
        expected=expected,
        data=[str(p) for p in args.data],
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _print_calibration(
    policy: CalibratedPolicy, on_validation: dict[str, float], *, n_val: int, n_test: int, setup: Setup
) -> None:
    band = f" [{policy.unsure_low:.4f}, {policy.unsure_high:.4f})" if policy.second_opinion == "when_unsure" else ""
    print(
        f"{policy.target}: router_threshold {policy.router_threshold:.6f}, escalation_threshold "
        f"{policy.escalation_threshold:.6f}, second opinion {policy.second_opinion}{band}"
    )
    print(
        f"validation ({n_val} prompts): quality {on_validation['quality']:.4f}, cost/1k "
        f"${on_validation['cost']:.4f}, large share {on_validation['large_share']:.3f}"
    )
    print(f"expected on {n_test} test prompts (95% bootstrap intervals):")
    print(format_expected(policy.expected))
    if policy.second_opinion != "never" and setup.settings.escalation.second_opinion.tier is None:
        print("note: the config names no escalation.second_opinion.tier; the gateway cannot ask one", file=sys.stderr)
