"""Training data from the outcome stream: labelled traffic (training.labels) -> the PairData a file gives.

Identity of a traffic prompt: a replayed benchmark prompt (tags ``dataset`` and ``prompt_id``, as
`cascade replay` sends them) keeps its benchmark identity, source = the dataset name with ``-`` as ``_``
(``mmlu-pro`` -> ``mmlu_pro``, the shipped file's stem), so it lands in the same prompt-id split as in the
file: a prompt held back from a model trained on the file is held back in the traffic too. Any other
prompt is source ``traffic`` with its SHA-256 as id. The held-back slice is the ``test`` part of that
split (training.data.split_masks with the card's seed): never trained on, the same for every fit with
that seed however the stream was cut into durable batches, and what evaluate and publish score on.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from nats.aio.client import Client

from services.core.settings import CascadeSettings
from training.data import PairData, pair_frame, split_masks
from training.labels import SOURCES, LabelRow, LabelSummary, Traffic, label_rows, read_traffic

TRAFFIC_SOURCE = "traffic"
HELD_BACK_SPLIT = "test"
T = TypeVar("T")


@dataclass
class Labelled:
    rows: list[LabelRow]
    summary: LabelSummary
    traffic: Traffic  # holds the unacknowledged messages when read with a durable

    def line(self, url: str) -> str:
        """What was read, for the command's output."""
        s = self.summary
        sources = ", ".join(f"{k} {s.by_source[k]}" for k in SOURCES if s.by_source[k]) or "none"
        return f"read {s.outcomes} outcomes and {s.feedback} feedback events from {url} (labels: {sources})"


async def read_labelled(
    nc: Client, settings: CascadeSettings, *, durable: str | None, since: datetime | None, hold: bool
) -> Labelled:
    """Read and label the stream's events (a durable's unread part, or all of it). With ``hold``, the
    caller acks them (``traffic.ack()``, on the same connection) once it has used them."""
    traffic = await read_traffic(
        nc.jetstream(), stream=settings.outcomes.stream, durable=durable, since=since, hold=hold
    )
    rows, summary = label_rows(
        traffic.outcomes,
        traffic.feedback,
        window_s=settings.outcomes.feedback_window_s,
        tier_models=tier_models(settings),
    )
    return Labelled(rows=rows, summary=summary, traffic=traffic)


async def train_on_stream(
    args: argparse.Namespace, settings: CascadeSettings, *, url: str, name: str, train: Callable[[Labelled], T]
) -> T:
    """``train(labelled events)`` in a thread: the unread events of ``args.durable`` (held, acknowledged
    once ``train`` returns, given back when it raises), else the whole stream (or ``args.since``)."""
    from services.cli.export import parse_since
    from services.core.nats import connect_from_settings

    since = parse_since(args.since) if args.since else None
    nc = await connect_from_settings(settings.nats, name=name, url=url, wait_s=5)
    try:
        labelled = await read_labelled(nc, settings, durable=args.durable, since=since, hold=bool(args.durable))
        try:
            result = await asyncio.to_thread(train, labelled)
        except BaseException:
            await labelled.traffic.release()
            raise
        await labelled.traffic.ack()
        await nc.flush()
    finally:
        await nc.drain()
    if args.durable:
        print(f"acknowledged the events on durable {args.durable!r}: the next fit with it reads only newer ones")
    return result


def stream_record(args: argparse.Namespace, labelled: Labelled, *, url: str, stream: str) -> dict[str, Any]:
    """What a model card says about the events it was trained on (``training_stream``)."""
    times = [r.time for r in labelled.rows]
    seqs = [m.metadata.sequence.stream for m in labelled.traffic.held]
    return {
        "url": url,
        "stream": stream,
        "durable": args.durable,
        "since": args.since,
        "outcomes": labelled.summary.outcomes,
        "feedback": labelled.summary.feedback,
        # The stream sequence numbers of the events read with the durable (None without one).
        "stream_seq": [min(seqs), max(seqs)] if seqs else None,
        "first_event": min(times).replace(tzinfo=UTC).isoformat() if times else None,
        "last_event": max(times).replace(tzinfo=UTC).isoformat() if times else None,
    }


def held_back_record(seed: int) -> dict[str, Any]:
    """The card's ``held_back``: which slice evaluate and the publish gate score on."""
    return {
        "split": HELD_BACK_SPLIT,
        "by": "training.data.split_masks: hash of (source, prompt_id) with split.seed; replayed prompts "
        "keep their benchmark source and id (training.traffic)",
        "seed": seed,
    }


async def read_pairs(
    settings: CascadeSettings, *, url: str, since: datetime | None, small: str, large: str
) -> tuple[PairData, Coverage]:
    """The whole stream (or from ``since``), labelled, as PairData for (small, large); acks nothing."""
    labelled = await read_all(settings, url=url, since=since)
    return traffic_pairs(labelled.rows, small=small, large=large)


async def read_all(settings: CascadeSettings, *, url: str, since: datetime | None) -> Labelled:
    """The whole stream (or from ``since``), labelled; acks nothing."""
    from services.core.nats import connect_from_settings

    nc = await connect_from_settings(settings.nats, name="cascade-train-traffic", url=url, wait_s=5)
    try:
        return await read_labelled(nc, settings, durable=None, since=since, hold=False)
    finally:
        await nc.drain()


def tier_models(settings: CascadeSettings) -> dict[str, str]:
    return {name: getattr(t, t.backend).model for name, t in settings.tiers.items()}


def default_pair(settings: CascadeSettings) -> tuple[str, str]:
    """The models of the config's small and large tier."""
    models = tier_models(settings)
    small, large = settings.router.small_tier, settings.router.large_tier
    if small not in models or large not in models:
        raise ValueError(f"the config has no tier {small!r} or {large!r}: give --small and --large")
    return models[small], models[large]


def long_frame(rows: Iterable[LabelRow]) -> pd.DataFrame:
    """Label rows with a prompt text, as long rows pair_frame reads (source, prompt_id: see module doc)."""
    kept = [r for r in rows if r.prompt]
    return pd.DataFrame(
        {
            "source": [_source(r) for r in kept],
            "prompt_id": [r.tags.get("prompt_id") or r.prompt_sha256 for r in kept],
            "prompt": [r.prompt for r in kept],
            "model": [r.model for r in kept],
            "score": [r.score for r in kept],
            "response": pd.Series([r.response for r in kept], dtype="object"),
            "time": [r.time for r in kept],
        }
    )


def _source(row: LabelRow) -> str:
    if row.tags.get("prompt_id") and row.tags.get("dataset"):
        return row.tags["dataset"].replace("-", "_")
    return TRAFFIC_SOURCE


@dataclass(frozen=True)
class Coverage:
    """How many traffic prompts have a label for the small tier, the large tier, both."""

    prompts: int
    small: int
    large: int
    both: int

    def line(self) -> str:
        return (
            f"{self.prompts} labelled prompts: {self.small} with a small-tier label, {self.large} with a "
            f"large-tier label, {self.both} with both (only these train)"
        )


def coverage(frame: pd.DataFrame, *, small: str, large: str) -> Coverage:
    by_prompt = frame.groupby(["source", "prompt_id"])["model"].agg(set)
    has_small = by_prompt.map(lambda m: small in m)
    has_large = by_prompt.map(lambda m: large in m)
    return Coverage(
        prompts=len(by_prompt),
        small=int(has_small.sum()),
        large=int(has_large.sum()),
        both=int((has_small & has_large).sum()),
    )


def traffic_pairs(rows: Iterable[LabelRow], *, small: str, large: str) -> tuple[PairData, Coverage]:
    frame = long_frame(rows)
    if frame.empty:
        return PairData(pd.DataFrame(columns=["source", "prompt_id", "prompt", "small", "large"])), Coverage(0, 0, 0, 0)
    return pair_frame(frame, small=small, large=large), coverage(frame, small=small, large=large)


def trained_sources(card: dict) -> set[str]:
    """The sources a router was trained on: recorded by fit (training_sources), else its files' stems."""
    from pathlib import Path

    if "training_sources" in card:
        return set(card["training_sources"])
    return {Path(p).stem for p in card.get("training_data", [])}


def held_back_from(data: PairData, cards: Iterable[dict]) -> PairData:
    """The rows no model (by its card) was trained on: for a source a model trained on, only the
    held-back split of its prompt-id split (its seed)."""
    return data.subset(held_back_mask(data.frame, cards))


def held_back_mask(keys: pd.DataFrame, cards: Iterable[dict]) -> np.ndarray:
    """Which of the ``keys`` (source, prompt_id) rows no model was trained on (see held_back_from)."""
    keep = np.ones(len(keys), dtype=bool)
    for card in cards:
        seed = int(card.get("split", {}).get("seed", 0))
        seen = keys["source"].isin(trained_sources(card)).to_numpy()
        if seen.any():
            keep &= ~seen | split_masks(PairData(keys), seed=seed)[HELD_BACK_SPLIT]
    return keep
