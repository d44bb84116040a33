"""`cascade train fit --data FILE`: outcome files -> fitted model -> ONNX (parity-checked) -> model dir
(on the outcome stream: training.fit_stream)."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.core.settings import load_settings
from training.data import load_data_files
from training.fit import fit_and_write


def run_fit(args: argparse.Namespace) -> int:
    if args.durable or args.since:
        raise ValueError("--durable and --since read the outcome stream: add --from-nats [URL]")
    if not args.data:
        raise ValueError("train fit needs --data FILE, --from-nats [URL] or both")
    data, pairs = load_data_files(
        args.data, pairs=args.pair, small=args.small, large=args.large, n=args.sample, seed=args.seed
    )
    extra = {"training_data": [str(p) for p in args.data]}
    settings = load_settings(args.config)
    fit_and_write(args, settings=settings, data=data, pair=pairs[Path(args.data[0]).stem], pairs=pairs, extra=extra)
    return 0
