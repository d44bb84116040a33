"""`cascade train evaluate --policy cascade --tiers A,B,C` and `cascade train calibrate --tiers A,B,C`:
the cascade over N tiers (cheapest first) replayed on recorded answers (training/policy_tiers.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier import RouterModel, load_model
from classifier.confidence import ConfidenceModel, Evidence
from classifier.policy import CalibratedPolicy, load_policy, save_policy
from services.core.settings import CascadeSettings, load_settings
from training.evaluation import Price
from training.policy_calibrate import bootstrap_metric, parse_policy_target
from training.policy_data import (
    filter_categories,
    held_out_mask,
    load_confidence_model,
    load_replay,
    parse_categories,
    route_threshold,
    sample_frame,
)
from training.policy_signals import BATCH, model_card, router_scores, split_seeds, tokens
from training.policy_tiers import Climb, Ladder, build_ladder, calibrate_climb, simulate_climb, summarise_climb


def parse_tiers(spec: str) -> list[str]:
    models = [m.strip() for m in spec.split(",") if m.strip()]
    if not models or len(set(models)) != len(models):
        raise ValueError(f"--tiers wants distinct model names, cheapest first, comma-separated; got {spec!r}")
    return models


def tier_prices(settings: CascadeSettings, n_tiers: int) -> tuple[list[Price], Price]:
    """Prices of the config's router.tiers, position by position, and of its second-opinion tier."""
    names = settings.router.tiers
    if len(names) != n_tiers:
        raise ValueError(
            f"--tiers names {n_tiers} models but the config's router.tiers has {len(names)} ({list(names)}); "
            "give a --config whose router.tiers lists as many tiers (their prices are used in order)"
        )
    prices = [_price(settings, name) for name in names]
    second = settings.escalation.second_opinion.tier
    return prices, _price(settings, second) if second else prices[0]


def _price(settings: CascadeSettings, tier: str) -> Price:
    p = settings.tiers[tier].price
    return Price(p.input_per_mtok, p.output_per_mtok)


class LadderSetup:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = load_settings(args.config)
        self.models = parse_tiers(args.tiers)
        loaded = load_confidence_model(args.confidence, args.confidence_model, self.settings)
        if loaded is None:
            raise ValueError("no confidence model")
        self.confidence, conf_path = loaded
        self.router: RouterModel = load_model(args.model or self.settings.router.model)
        self.prices, self.second_price = tier_prices(self.settings, len(self.models))
        roles = {f"t{i}": m for i, m in enumerate(self.models)} | ({"second": args.second} if args.second else {})
        cards = [self.router.card, model_card(self.confidence, conf_path)]
        keep, drop = parse_categories(args.categories), parse_categories(args.holdout_categories)
        self.files = [
            (filter_categories(load_replay(path, roles), keep=keep, drop=drop), split_seeds(cards, stem=path.stem))
            for path in map(Path, args.data)
        ]

    def ladder(self, split: str) -> tuple[Ladder, int]:
        parts = [f if split == "all" else f[held_out_mask(f, split=split, seeds=s)] for f, s in self.files]
        frame = sample_frame(pd.concat(parts, ignore_index=True), n=self.args.sample, seed=self.args.seed)
        if frame.empty:
            raise ValueError(f"no {split} prompts left after the filters")
        return self._build(frame), len(frame)

    def _build(self, frame: pd.DataFrame) -> Ladder:
        scores = router_scores(self.router, frame["prompt"].tolist())
        prompt_tokens = tokens(frame["prompt"])

        def cost(role: str, p: Price) -> np.ndarray:
            return (prompt_tokens * p.input + tokens(frame[f"text_{role}"]) * p.output) / 1e6

        n = len(self.models)
        second = frame["text_second"].tolist() if self.args.second else None
        return build_ladder(
            router=scores,
            quality=np.stack([frame[f"score_t{i}"].to_numpy(dtype=np.float64) for i in range(n)]),
            cost=np.stack([cost(f"t{i}", self.prices[i]) for i in range(n)]),
            cost_second=cost("second", self.second_price) if second else np.zeros(len(frame)),
            texts=[frame[f"text_t{i}"].tolist() for i in range(n)],
            second=second,
            confidence=_scorer(self.confidence, frame["prompt"].tolist(), scores),
        )

    def max_escalations(self) -> int:
        return self.settings.max_escalations if self.args.config else len(self.models) - 1


def _scorer(model: ConfidenceModel, prompts: list[str], scores: np.ndarray):  # type: ignore[no-untyped-def]
    def confidence(answers: list[str], others: list[tuple[str, ...]]) -> np.ndarray:
        items = [
            Evidence(prompt=p, answer=a, others=o, router_score=float(r))
            for p, a, o, r in zip(prompts, answers, others, scores, strict=True)
        ]
        chunks = [model.confidence(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]
        return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)

    return confidence


def configured_climb(setup: LadderSetup) -> tuple[Climb, str]:
    """The N-tier cascade as the gateway would run it: a policy file's cuts and steps, else the config's."""
    n, args, s = len(setup.models), setup.args, setup.settings
    path = args.calibration or s.escalation.calibration
    if path is not None and (args.calibration or Path(path).is_file()):
        p = load_policy(path)
        return Climb(cuts=p.router_cuts(n), steps=p.step_thresholds(n), max_escalations=setup.max_escalations()), str(
            path
        )
    cuts = s.router.thresholds or (route_threshold(s, setup.router),) * (n - 1)
    return Climb(cuts=tuple(cuts), steps=s.step_thresholds(), max_escalations=setup.max_escalations()), "config"


def run_ladder_evaluate(args: argparse.Namespace) -> int:
    setup = LadderSetup(args)
    ladder, n = setup.ladder("test" if args.split == "auto" else "all")
    climb, source = configured_climb(setup)
    report = ladder_report(setup, ladder, {"cascade": climb}, n=n) | {"cascade_policy": {"source": source}}
    out = Path(args.out or "policy-evaluation")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ladder.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_ladder(report))
    print(f"wrote {out / 'ladder.json'}")
    return 0


def ladder_report(setup: LadderSetup, ladder: Ladder, climbs: dict[str, Climb], *, n: int) -> dict[str, Any]:
    """The cascade(s), and every tier answering alone, summarised on ``ladder``."""
    top_quality, names = float(ladder.quality[-1].mean()), setup.models
    policies: dict[str, dict[str, Any]] = {
        name: summarise_climb(simulate_climb(ladder, c), n_tiers=ladder.n_tiers, top_quality=top_quality, names=names)
        | {"cuts": list(c.cuts), "steps": list(c.steps), "max_escalations": c.max_escalations}
        for name, c in climbs.items()
    }
    for i, model in enumerate(names):
        cuts = (-1.0,) * i + (2.0,) * (ladder.n_tiers - 1 - i)  # every score starts on tier i
        alone = Climb(cuts=cuts, steps=(0.0,) * (ladder.n_tiers - 1), max_escalations=0)
        policies[f"only {model}"] = summarise_climb(
            simulate_climb(replace_second(ladder), alone), n_tiers=ladder.n_tiers, top_quality=top_quality, names=names
        )
    return {
        "data": [str(p) for p in setup.args.data],
        "n_prompts": n,
        "tiers": names,
        "second_opinion": setup.args.second,
        "router_model_version": setup.router.version,
        "confidence": {"name": setup.confidence.name, "version": setup.confidence.version},
        "prices_usd_per_million_tokens": [vars(p) for p in setup.prices],
        "top_quality": top_quality,
        "policies": policies,
    }


def replace_second(ladder: Ladder) -> Ladder:
    """The same prompts without a second opinion (a tier answering alone asks none)."""
    return replace(ladder, cost_second=np.zeros(len(ladder)))


def format_ladder(report: dict[str, Any]) -> str:
    names = report["tiers"]
    short = [m.removeprefix("Meta-").split("-Instruct")[0].split("-Chat")[0] for m in names]
    head = f"{'policy':34}{'quality':>9}{'vs top':>8}{'$/1k':>9}{'top':>7}" + "".join(f"{s[:14]:>16}" for s in short)
    rows = []
    for name, m in report["policies"].items():
        cells = f"{m['quality']:>9.4f}{m['quality_relative']:>8.1%}{m['cost_per_1k_usd']:>9.4f}{m['large_share']:>7.1%}"
        rows.append(f"{name[:34]:34}{cells}" + "".join(f"{m[f'answered_by:{t}']:>16.1%}" for t in names))
    note = (
        f"{report['n_prompts']} prompts; tiers (cheapest first): {' -> '.join(names)}; columns per tier: share answered"
    )
    return "\n".join([head, *rows, note])


def run_ladder_calibrate(args: argparse.Namespace) -> int:
    target = parse_policy_target(args.target)
    setup = LadderSetup(args)
    out = args.out or setup.settings.escalation.calibration
    if out is None:
        raise ValueError("give --out POLICY.json (or set escalation.calibration in the config)")
    validation, n_val = setup.ladder("validation")
    climb, on_val = calibrate_climb(validation, target=target, max_escalations=setup.max_escalations())
    test, n_test = setup.ladder("test")
    outcome = simulate_climb(test, climb)
    expected = {
        "quality": bootstrap_metric(outcome.quality, seed=args.seed, resamples=args.resamples),
        "cost_per_1k_usd": bootstrap_metric(outcome.cost * 1000.0, seed=args.seed, resamples=args.resamples),
        "large_share": bootstrap_metric(outcome.top_used.astype(np.float64), seed=args.seed, resamples=args.resamples),
    }
    policy = CalibratedPolicy(
        router_threshold=climb.cuts[-1] if climb.cuts else 1.0,
        escalation_threshold=climb.steps[0] if climb.steps else 0.0,
        router_thresholds=list(climb.cuts),
        escalation_thresholds=list(climb.steps),
        tiers=setup.models,
        second_opinion="parallel" if args.second else "never",
        router_model_version=setup.router.version,
        confidence_model_version=setup.confidence.version,
        target=target.spec,
        expected=expected,
        data=[str(p) for p in args.data],
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_policy(policy, out)
    print(
        f"{target.spec} over {len(setup.models)} tiers: router cuts {[round(c, 6) for c in climb.cuts]}, "
        f"step thresholds {[round(s, 6) for s in climb.steps]}, at most {climb.max_escalations} escalations"
    )
    print(
        f"validation ({n_val} prompts): quality {on_val['quality']:.4f}, cost/1k ${on_val['cost']:.4f}, "
        f"top-tier share {on_val['large_share']:.3f}"
    )
    print(f"expected on {n_test} test prompts (95% bootstrap intervals):")
    for key, m in expected.items():
        print(f"  {key:18} {m['value']:.4f}  [{m['low']:.4f}, {m['high']:.4f}]")
    print(f"wrote {out}")
    return 0
