"""`cascade train publish`: put a model in the JetStream object store, only if it beats the one in service."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nats
import numpy as np
import pandas as pd
from nats.aio.client import Client as NatsClient

from classifier import RouterModel, load_model
from services.core.errors import CascadeError, Unavailable
from services.router import registry
from training.data import PairData, load_pair, pair_for, split_masks
from training.fit_cmd import pair_overrides
from training.metrics import apgr, routing_curve

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
NOT_PUBLISHED = 3


@dataclass(frozen=True, kw_only=True)
class Comparison:
    candidate_apgr: float
    published_apgr: float
    n_prompts: int

    def better(self, min_gain: float) -> bool:
        return self.candidate_apgr - self.published_apgr > min_gain


def run_publish(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_publish(args))
    except (CascadeError, ValueError) as exc:
        print(f"cascade train publish: {exc}", file=sys.stderr)
        return 1


async def _publish(args: argparse.Namespace) -> int:
    candidate = load_model(args.model)  # refuse a broken candidate before touching NATS
    url = args.nats or os.environ.get("CASCADE_NATS__URL") or DEFAULT_NATS_URL
    nc = await _connect(url)
    try:
        js = nc.jetstream()
        await registry.open_bucket(js, bucket=args.bucket, create=True)
        current = await registry.current_version(js, bucket=args.bucket)
        if current == candidate.version:
            print(f"{current} is already the latest model in bucket {args.bucket}")
            return 0
        if current is not None and not args.force:
            if not args.data:
                raise ValueError(f"{current} is published: give --data FILE to compare with it, or --force")
            with tempfile.TemporaryDirectory(prefix="cascade-publish-") as tmp:
                path = await registry.fetch(js, bucket=args.bucket, version=current, cache_dir=Path(tmp))
                published = load_model(path)
                result = await asyncio.to_thread(compare, candidate=candidate, published=published, args=args)
            if not _report(result, candidate=candidate, published=published, min_gain=args.min_gain):
                return NOT_PUBLISHED
        version = await registry.publish(js, model_dir=Path(args.model), bucket=args.bucket)
        print(f"published {version} to bucket {args.bucket} on {url}; latest -> {version}")
        return 0
    finally:
        await nc.drain()


async def _connect(url: str) -> NatsClient:
    """One attempt, no reconnects: a one-shot command should fail fast, not retry forever."""

    async def quiet(_: Exception) -> None:  # the failure is reported once, below, without a traceback
        pass

    try:
        return await nats.connect(
            url, name="cascade-train-publish", connect_timeout=5, allow_reconnect=False, error_cb=quiet
        )
    except (OSError, nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"cannot connect to NATS at {url}: {exc!r}") from exc


def _report(result: Comparison, *, candidate: RouterModel, published: RouterModel, min_gain: float) -> bool:
    better = result.better(min_gain)
    print(
        f"APGR on {result.n_prompts} held-out prompts: candidate {candidate.version} "
        f"{result.candidate_apgr:.4f}, published {published.version} {result.published_apgr:.4f} "
        f"(gain {result.candidate_apgr - result.published_apgr:+.4f}, needed > {min_gain:+.4f})"
    )
    if not better:
        print(f"not published: {published.version} stays the latest")
    return better


def compare(*, candidate: RouterModel, published: RouterModel, args: argparse.Namespace) -> Comparison:
    """APGR of both models on the --data prompts that neither model was trained on."""
    data = held_out_by_all(models=[candidate, published], args=args)
    if len(data) == 0:
        raise ValueError("no --data prompt is held out from both models; give other data")
    small, large = data.small, data.large
    return Comparison(
        candidate_apgr=apgr(routing_curve(scores=_score(candidate, data), small=small, large=large)),
        published_apgr=apgr(routing_curve(scores=_score(published, data), small=small, large=large)),
        n_prompts=len(data),
    )


def held_out_by_all(*, models: list[RouterModel], args: argparse.Namespace) -> PairData:
    """Each --data file; for a file a model was trained on, only the test split of that model's
    prompt-id split (of every such model), so neither model is scored on a prompt it has seen."""
    overrides = pair_overrides(args)
    parts = []
    for path in map(Path, args.data):
        small, large = pair_for(path, overrides)
        data = load_pair(path, small=small, large=large)
        keep = np.ones(len(data), dtype=bool)
        for model in models:
            if path.stem in {Path(p).stem for p in model.card.get("training_data", [])}:
                keep &= split_masks(data, seed=int(model.card.get("split", {}).get("seed", 0)))["test"]
        parts.append(data.subset(keep).frame)
    return PairData(pd.concat(parts, ignore_index=True))


def _score(model: RouterModel, data: PairData, batch: int = 256) -> np.ndarray:
    prompts = data.prompts
    chunks = [model.score(prompts[i : i + batch]) for i in range(0, len(prompts), batch)]
    return np.concatenate(chunks).astype(np.float64)
