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

    python -m bench.retrain_loop --data ../shared/data/routing/mmlu_pro.parquet [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from services.cli.main import main as cascade_main
from services.cli.replay import ReplaySummary, load_prompts, run_replay
from services.core.nats import NatsServer
from services.core.settings import DEFAULT_ROUTER_MODEL
from services.sdk import AsyncCascadeClient
from tests.support.system import make_settings, run_system
from training.data import DEFAULT_PAIRS, PairData, split_masks


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


async def main(args: argparse.Namespace) -> None:
    data = Path(args.data).resolve()
    small, large = DEFAULT_PAIRS[data.stem]
    prompts = load_prompts(data, limit=args.limit)
    ids = PairData(pd.DataFrame({"source": data.stem, "prompt_id": [p.prompt_id for p in prompts]}))
    held = [p for p, t in zip(prompts, split_masks(ids, seed=0)["test"], strict=True) if t]
    with tempfile.TemporaryDirectory(prefix="retrain-loop-") as tmp:
        work = Path(tmp)
        async with NatsServer(data_dir=work / "js") as nats:
            tiers = {
                "small": {"backend": "replay", "replay": {"data": data, "model": small}, "price": args.small_price},
                "large": {"backend": "replay", "replay": {"data": data, "model": large}, "price": args.large_price},
            }
            router = {"published": "latest", "registry_bucket": "models", "cache_dir": str(work / "cache")}
            router["target_large_share"] = args.large_share  # both routers cut at their own threshold for it
            settings = make_settings(nats.url, tiers, router=router, outcomes={"store_prompt_text": True})
            dumped = settings.model_dump(mode="json", include={"nats", "tiers", "outcomes"}, exclude_unset=True)
            config = work / "cascade.yaml"
            config.write_text(yaml.safe_dump({**dumped, "router": router}))
            cfg = ("--config", str(config))
            await asyncio.to_thread(cascade, "train", "publish", "--model", str(DEFAULT_ROUTER_MODEL), *cfg)
            async with run_system(nats, settings) as system, AsyncCascadeClient(target=system.target) as client:

                async def replay(ps: list, policy: str, feedback: bool = False) -> ReplaySummary:
                    models = {"small": small, "large": large}
                    return await run_replay(
                        client,
                        ps,
                        tier_models=models,
                        large_tier="large",
                        policy=policy,
                        feedback=feedback,
                        concurrency=args.concurrency,
                    )

                print(f"{len(prompts)} prompts of {data.name}, {len(held)} held back (test split, seed 0)")
                print(line("before (shipped router, --policy route)", await replay(held, "route")))
                for policy in ("small", "large"):
                    print(line(f"labels (--policy {policy} --feedback)", await replay(prompts, policy, True)))
                while system.gateway.outcomes.pending:
                    await asyncio.sleep(0.1)
                out = work / "retrained"
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
                    r = await client.generate(held[0].prompt, policy="route")
                    if r.route.router_model_version == new:
                        break
                    await asyncio.sleep(0.05)
                print(
                    line(f"after (router {r.route.router_model_version}, --policy route)", await replay(held, "route"))
                )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="routing-data file with the small and large model's answers")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--large-share", type=float, default=0.3, help="router.target_large_share (default: 0.3)")
    p.add_argument("--min-gain", type=float, default=0.0, help="the publish gate's --min-gain (default: 0)")
    p.add_argument("--small-price", type=json.loads, default={"input_per_mtok": 0.2, "output_per_mtok": 0.2})
    p.add_argument("--large-price", type=json.loads, default={"input_per_mtok": 0.9, "output_per_mtok": 0.9})
    asyncio.run(main(p.parse_args()))
