"""The loop closed on a routing-data file: before/after quality and cost of routing by a router retrained
from the system's own labelled traffic.

A real nats-server and the services in this process on replay tiers (small and large model of the file),
the shipped router published to the registry and followed (router.published: latest). Then:

1. before: the held-back prompts (the test split, seed 0, that neither router trains on) under
   ``--policy route``: quality (mean recorded score), cost, large share;
   (router.target_large_share: each router's own threshold for that share, from its card);
2. labels: every prompt replayed with ``--policy small`` and ``--policy large`` and ``--feedback``;
3. ``cascade train fit --from-nats --durable``, ``cascade train evaluate --from-nats``,
   ``cascade train publish --from-nats`` (the gate on the held-back slice);
4. after: the same held-back prompts under ``route`` once the router serves the new version.

With ``--scorer``, the answer scorer instead: a second-opinion tier (Llama-3.1-8B on MMLU-Pro) answers
beside the small one and answer texts are recorded (``outcomes.store_answer_text``), the shipped
scorer is published and serves; every prompt is replayed under the cascade with ``--feedback`` (and
under ``--policy large``, so every prompt has a large-tier score for the escalation APGR); then
``cascade train fit-scorer --from-nats --durable``, ``evaluate --from-nats`` (retrained vs shipped on
the held-back slice, printed as a table) and the publish gate.

    python -m bench.retrain_loop --data ../shared/data/routing/mmlu_pro.parquet [--limit N] [--scorer [--threshold 1]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from services.cli.main import main as cascade_main
from services.cli.replay import ReplaySummary, load_prompts, run_replay
from services.core.nats import NatsServer
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, DEFAULT_ROUTER_MODEL
from services.sdk import AsyncCascadeClient
from tests.support.system import make_settings, run_system
from training.data import DEFAULT_PAIRS, PairData, split_masks

SECOND = {"mmlu_pro": "Meta-Llama-3_1-8B-Instruct"}  # the second-opinion model of --scorer, by file stem


def cascade(*argv: str, ok: tuple[int, ...] = (0,)) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cascade_main(list(argv))
        except SystemExit as exit_:
            if int(exit_.code or 0) not in ok:
                raise RuntimeError(f"cascade {' '.join(argv[:2])} exited {exit_.code}: {out.getvalue()}") from None
    return out.getvalue()


def line(name: str, s: ReplaySummary) -> str:
    return (
        f"{name}: {s.answered} answered, quality {s.mean_score:.4f}, cost ${s.cost_usd:.4f} "
        f"(${1000 * s.cost_usd / max(s.answered, 1):.4f} per 1,000), large share {s.large_share:.1%}"
    )


@dataclass
class Loop:
    client: AsyncCascadeClient
    cfg: tuple[str, str]
    work: Path
    replay: Callable[..., Awaitable[ReplaySummary]]
    pending: Callable[[], int]


@contextlib.asynccontextmanager
async def serving(args: argparse.Namespace, data: Path, work: Path) -> AsyncIterator[Loop]:
    """A real nats-server and the services on replay tiers, the shipped models published and followed."""
    small, large = DEFAULT_PAIRS[data.stem]
    models = {"small": small, "large": large}
    sections: dict[str, Any] = {"outcomes": {"store_prompt_text": True}}
    if args.scorer:
        models["second"] = SECOND[data.stem]
        sections["outcomes"]["store_answer_text"] = True
        sections["escalation"] = {
            "confidence": "scorer",
            "published": "latest",
            "second_opinion": {"tier": "second", "mode": "parallel"},
        }
    async with NatsServer(data_dir=work / "js") as nats:
        prices = {"small": args.small_price, "second": args.small_price, "large": args.large_price}
        tiers = {
            t: {"backend": "replay", "replay": {"data": data, "model": m}, "price": prices[t]}
            for t, m in models.items()
        }
        router = {"published": "latest", "registry_bucket": "models", "cache_dir": str(work / "cache")}
        if args.threshold is not None:  # one cut for every router (1: every prompt starts on the small tier)
            router["threshold"] = args.threshold
        else:  # both routers cut at their own threshold for it
            router["target_large_share"] = args.large_share
        settings = make_settings(nats.url, tiers, router=router, **sections)
        dumped = settings.model_dump(mode="json", include={"nats", "tiers", "outcomes"}, exclude_unset=True)
        config = work / "cascade.yaml"
        config.write_text(yaml.safe_dump({**dumped, "router": router, **({} if not args.scorer else sections)}))
        cfg = ("--config", str(config))
        for model in [DEFAULT_ROUTER_MODEL] + ([DEFAULT_CONFIDENCE_MODEL] if args.scorer else []):
            await asyncio.to_thread(cascade, "train", "publish", "--model", str(model), *cfg)
        async with run_system(nats, settings) as system, AsyncCascadeClient(target=system.target) as client:

            async def replay(ps: list, policy: str | None, feedback: bool = False) -> ReplaySummary:
                return await run_replay(
                    client,
                    ps,
                    tier_models=models,
                    large_tier="large",
                    policy=policy,
                    feedback=feedback,
                    concurrency=args.concurrency,
                )

            yield Loop(client, cfg, work, replay, lambda: system.gateway.outcomes.pending)


async def settled(loop: Loop) -> None:
    while loop.pending():
        await asyncio.sleep(0.1)


async def main(args: argparse.Namespace) -> None:
    data = Path(args.data).resolve()
    prompts = load_prompts(data, limit=args.limit)
    ids = PairData(pd.DataFrame({"source": data.stem, "prompt_id": [p.prompt_id for p in prompts]}))
    held = [p for p, t in zip(prompts, split_masks(ids, seed=0)["test"], strict=True) if t]
    with tempfile.TemporaryDirectory(prefix="retrain-loop-") as tmp:
        async with serving(args, data, Path(tmp)) as loop:
            print(f"{len(prompts)} prompts of {data.name}, {len(held)} held back (test split, seed 0)")
            await (scorer_loop(loop, prompts) if args.scorer else router_loop(loop, args, prompts, held))


async def router_loop(loop: Loop, args: argparse.Namespace, prompts: list, held: list) -> None:
    print(line("before (shipped router, --policy route)", await loop.replay(held, "route")))
    for policy in ("small", "large"):
        print(line(f"labels (--policy {policy} --feedback)", await loop.replay(prompts, policy, True)))
    await settled(loop)
    out, cfg = loop.work / "retrained", loop.cfg
    fit = ("train", "fit", "--from-nats", *cfg, "--durable", "retrain", "--quiet", "--out", str(out))
    print(await asyncio.to_thread(cascade, *fit), end="")
    ev = ("train", "evaluate", "--model", str(out), "--from-nats", *cfg)
    print(await asyncio.to_thread(cascade, *ev), end="")
    gate = ("train", "publish", "--model", str(out), "--from-nats", *cfg, "--min-gain", str(args.min_gain))
    published = await asyncio.to_thread(cascade, *gate, ok=(0, 3))
    print(published, end="")
    if "not published" in published:
        return
    new = json.loads((out / "model_card.json").read_text())["version"]
    for _ in range(600):
        r = await loop.client.generate(held[0].prompt, policy="route")
        if r.route.router_model_version == new:
            break
        await asyncio.sleep(0.05)
    print(line(f"after (router {r.route.router_model_version}, --policy route)", await loop.replay(held, "route")))


async def scorer_loop(loop: Loop, prompts: list) -> None:
    print(line("labels (cascade, shipped scorer, --feedback)", await loop.replay(prompts, None, True)))
    print(line("large-tier labels (--policy large --feedback)", await loop.replay(prompts, "large", True)))
    await settled(loop)
    out, cfg = loop.work / "scorer", loop.cfg
    fit = ("train", "fit-scorer", "--from-nats", *cfg, "--durable", "retrain-scorer", "--out", str(out))
    print(await asyncio.to_thread(cascade, *fit), end="")
    print(await asyncio.to_thread(cascade, "train", "evaluate", "--model", str(out), "--from-nats", *cfg), end="")
    report = json.loads((out / "evaluation_scorer.json").read_text())
    print(scorer_table(report))
    gate = ("train", "publish", "--model", str(out), "--from-nats", *cfg)
    print(await asyncio.to_thread(cascade, *gate, ok=(0, 3)), end="")


def scorer_table(report: dict[str, Any]) -> str:
    rows = [("retrained " + report["model_version"], report["metrics"])]
    if "serving" in report:
        rows.append(("shipped " + report["serving"]["version"], report["serving"]["metrics"]))
    lines = [
        "| scorer | answers | ROC AUC | ECE | escalation APGR (n) | random | oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows:
        e = m.get(
            "escalation", {"apgr": float("nan"), "n": 0, "random_apgr": float("nan"), "oracle_apgr": float("nan")}
        )
        lines.append(
            f"| {name} | {m['n']} | {m['auc']:.4f} | {m['ece']:.4f} | {e['apgr']:.4f} ({e['n']}) | "
            f"{e['random_apgr']:.4f} | {e['oracle_apgr']:.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="routing-data file with the small and large model's answers")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--large-share", type=float, default=0.3, help="router.target_large_share (default: 0.3)")
    p.add_argument("--min-gain", type=float, default=0.0, help="the publish gate's --min-gain (default: 0)")
    p.add_argument("--scorer", action="store_true", help="retrain the answer scorer instead of the router")
    p.add_argument(
        "--threshold", type=float, help="router.threshold instead of --large-share (1: every prompt starts small)"
    )
    p.add_argument("--small-price", type=json.loads, default={"input_per_mtok": 0.2, "output_per_mtok": 0.2})
    p.add_argument("--large-price", type=json.loads, default={"input_per_mtok": 0.9, "output_per_mtok": 0.9})
    asyncio.run(main(p.parse_args()))
