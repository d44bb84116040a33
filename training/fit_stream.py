"""`cascade train fit --from-nats [URL]`: a router fitted on labelled traffic (plus any --data files).

With ``--durable NAME`` the events come from that durable consumer: exactly those it has not
acknowledged yet. Nothing is acknowledged while reading; all of them are acknowledged once the model is
written (so the next fit with that name reads only newer events), and given back (nak) when the fit
fails, so a rerun reads them again. A reader killed in between gets them back after
services.outcomes.reader.HOLD_ACK_WAIT_S. Without ``--durable`` the whole stream (or ``--since``) is
read and nothing is acknowledged. The held-back slice: see training.traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import pandas as pd

from services.core.errors import CascadeError
from services.core.settings import CascadeSettings, load_settings
from training.data import PairData, load_data_files, pair_overrides
from training.fit import fit_and_write
from training.traffic import (
    Labelled,
    default_pair,
    held_back_record,
    stream_record,
    traffic_pairs,
    train_on_stream,
)

BIAS_NOTE = (
    "note: under the cascade policy only escalated (hard) prompts get both a small and a large label, so a "
    "router fitted on that traffic alone learns a biased sample (worse than random in our runs); merge "
    "--data files, replay with --policy small and --policy large, or turn on exploration"
)


def run_fit_from_nats(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_fit(args))
    except (CascadeError, ValueError, OSError) as exc:
        print(f"cascade train fit: {exc}", file=sys.stderr)
        return 1


async def _fit(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = args.from_nats or settings.nats.client_url
    small, large = (args.small, args.large) if args.small else default_pair(settings)
    # Both or neither of --small/--large: checked before connecting.
    pair_overrides(args.pair, small=args.small, large=args.large, files=args.data or [])

    def train(labelled: Labelled) -> dict[str, Any]:
        return _fit_labelled(args, labelled, settings=settings, small=small, large=large, url=url)

    card = await train_on_stream(args, settings, url=url, name="cascade-train-fit", train=train)
    return 0 if card else 1


def _fit_labelled(
    args: argparse.Namespace, labelled: Labelled, *, settings: CascadeSettings, small: str, large: str, url: str
) -> dict[str, Any]:
    stream = settings.outcomes.stream
    traffic, cover = traffic_pairs(labelled.rows, small=small, large=large)
    print(labelled.line(url))
    print(f"pair {small} / {large}: {cover.line()}")
    if cover.prompts and cover.both < cover.prompts / 2:
        print(BIAS_NOTE)
    frames, pairs = [traffic.frame], dict[str, tuple[str, str]]()
    if args.data:
        files, pairs = load_data_files(
            args.data, pairs=args.pair, small=args.small, large=args.large, n=args.sample, seed=args.seed
        )
        frames.insert(0, files.frame)
    data = PairData(pd.concat([f for f in frames if len(f)] or frames, ignore_index=True))
    if len(data) == 0:
        raise ValueError("no prompt with both a small and a large label in the stream or the --data files")
    extra = {
        "training_data": [str(p) for p in args.data or []] + [f"{url}/{stream}"],
        "training_stream": {**stream_record(args, labelled, url=url, stream=stream), "prompts_both_tiers": cover.both},
        "held_back": held_back_record(args.seed),
    }
    pair = (small, large)
    return fit_and_write(args, settings=settings, data=data, pair=pair, pairs={**pairs, "traffic": pair}, extra=extra)
