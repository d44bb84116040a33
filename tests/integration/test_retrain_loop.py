"""The loop closed on a small slice: replay with feedback -> retrain from the stream -> gated publish ->
the router hot-reloads it -> the next decisions are made by the new version."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from services.cli.replay import load_prompts, run_replay
from services.core.settings import DEFAULT_ROUTER_MODEL
from services.sdk import AsyncCascadeClient
from tests.integration.test_train_from_nats import LARGE, MMLU_PRO, SMALL, run
from tests.support.system import make_settings, run_system
from training.data import PairData, split_masks

pytestmark = pytest.mark.usefixtures("routing_data")  # fails, never skips, without the shared data
PROMPTS = 240


def mmlu_slice(tmp_path: Path) -> Path:
    """The first PROMPTS MMLU-Pro prompts that both tiers' models answered, named like the full file
    (the name is the source a prompt's split is keyed by, so the slice splits as the file does)."""
    table = pq.read_table(MMLU_PRO, filters=[("model", "in", [SMALL, LARGE])])
    frame = table.to_pandas()
    both = frame.groupby("prompt_id")["model"].nunique()
    keep = sorted(both[both == 2].index)[:PROMPTS]
    path = tmp_path / "data" / "mmlu_pro.parquet"
    path.parent.mkdir()
    frame[frame.prompt_id.isin(keep)].to_parquet(path)
    return path


async def test_replayed_feedback_retrains_publishes_and_serves_the_new_router(nats_server, tmp_path, capsys):
    data = mmlu_slice(tmp_path)
    tiers = {
        "small": {"backend": "replay", "replay": {"data": data, "model": SMALL}},
        "large": {"backend": "replay", "replay": {"data": data, "model": LARGE}},
    }
    router = {"published": "latest", "registry_bucket": "models", "cache_dir": tmp_path / "cache"}
    settings = make_settings(nats_server.url, tiers, router=router, outcomes={"store_prompt_text": True})
    config = tmp_path / "cascade.yaml"
    dumped = settings.model_dump(mode="json", include={"nats", "tiers", "outcomes"}, exclude_unset=True)
    config.write_text(yaml.safe_dump({**dumped, "router": {**router, "cache_dir": str(router["cache_dir"])}}))
    cfg = ("--config", str(config))
    rc, _, err = await run(capsys, "train", "publish", "--model", str(DEFAULT_ROUTER_MODEL), *cfg)
    assert rc == 0, err
    shipped = json.loads((DEFAULT_ROUTER_MODEL / "model_card.json").read_text())["version"]

    async with run_system(nats_server, settings) as system:
        prompts = load_prompts(data)
        models = {"small": SMALL, "large": LARGE}
        async with AsyncCascadeClient(target=system.target, timeout=30) as client:
            for policy in ("small", "large"):  # both tiers' labels for every prompt (see README: sampling bias)
                summary = await run_replay(
                    client, prompts, tier_models=models, large_tier="large", policy=policy, feedback=True
                )
                assert summary.answered == PROMPTS and summary.feedback_sent == PROMPTS
            before = await client.generate(prompts[0].prompt, policy="route")
            assert before.route.router_model_version == shipped
            while system.gateway.outcomes.pending:
                await asyncio.sleep(0.05)

            fit = ("train", "fit", "--from-nats", *cfg, "--durable", "retrain", "--quiet", "--out")
            rc, out, err = await run(capsys, *fit, str(tmp_path / "new"))
            assert rc == 0, err
            assert f"{PROMPTS} with both" in out
            new = json.loads((tmp_path / "new" / "model_card.json").read_text())["version"]

            # The gate scores both on the traffic's held-back slice: the test split both were keyed by.
            gate = ("train", "publish", "--model", str(tmp_path / "new"), *cfg, "--from-nats", "--min-gain", "-10")
            rc, out, err = await run(capsys, *gate)
            assert rc == 0, err
            ids = PairData(pd.DataFrame({"source": "mmlu_pro", "prompt_id": [p.prompt_id for p in prompts]}))
            held = int(split_masks(ids, seed=0)["test"].sum())  # the shipped router's seed and the new one's
            assert f"APGR on {held} held-out prompts" in out and f"latest -> {new}" in out

            for _ in range(200):  # the router follows "latest" (ModelEvent, else its reload interval)
                after = await client.generate(prompts[0].prompt, policy="route")
                if after.route.router_model_version == new:
                    break
                await asyncio.sleep(0.05)
            assert after.route.router_model_version == new
