"""`cascade train publish`: put a model (router or answer scorer) in the registry, only if it is not
worse than the one in service (training.publish_gate), or with --force and a reason on record."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.core.errors import CascadeError
from services.core.nats import connect_from_settings
from services.core.settings import CascadeSettings, load_settings
from services.registry.kinds import detect_kind
from services.registry.manage import ModelRegistry
from training.publish_gate import compare

NOT_PUBLISHED = 3


def run_publish(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_publish(args))
    except (CascadeError, ValueError) as exc:
        print(f"cascade train publish: {exc}", file=sys.stderr)
        return 1


async def _publish(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.force and not args.reason:
        raise ValueError("--force bypasses the gate: say why with --reason TEXT (kept in the registry)")
    kind = detect_kind(Path(args.model))
    candidate = await asyncio.to_thread(kind.load, Path(args.model))  # refuse a broken candidate before NATS
    by = args.by or getpass.getuser()
    url, bucket = settings.nats.client_url, settings.router.registry_bucket
    nc = await connect_from_settings(settings.nats, name="cascade-train-publish", wait_s=5)
    try:
        registry = ModelRegistry(nc=nc, bucket=bucket)
        current = await registry.serving(kind.name)
        if current == candidate.version:
            print(f"{current} is already the active {kind.name} model in bucket {bucket}")
            return 0
        gate: dict[str, Any] | None = None
        reason = args.reason or "first publication"
        if current is not None and not args.force:
            if not args.data and args.from_nats is None:
                raise ValueError(
                    f"{kind.name} {current} is in service: give --data FILE or --from-nats to compare with it, "
                    "or --force"
                )
            traffic = await _traffic(args, settings, candidate) if args.from_nats is not None else None
            with tempfile.TemporaryDirectory(prefix="cascade-publish-") as tmp:
                path = await registry.fetch(kind=kind.name, version=current, cache_dir=Path(tmp))
                serving = await asyncio.to_thread(kind.load, path)
                result = await asyncio.to_thread(
                    compare, kind.name, candidate=candidate, serving=serving, args=args, traffic=traffic
                )
            gate, summary = result.as_record(), result.summary(candidate=candidate.version, serving=current)
            print(f"{summary}, needed >= {args.min_gain:+.4f}")
            reason = args.reason or summary
            if not result.passes(args.min_gain):
                await registry.refuse(kind=kind.name, version=candidate.version, by=by, reason=summary, gate=gate)
                print(f"not published: {current} stays the active {kind.name} model")
                return NOT_PUBLISHED
        forced = bool(args.force and current is not None)
        await registry.publish(
            kind=kind.name,
            model_dir=Path(args.model),
            version=candidate.version,
            by=by,
            reason=reason,
            forced=forced,
            gate=gate,
        )
        note = " (forced: gate bypassed)" if forced else ""
        print(f"published {kind.name} {candidate.version} to {bucket} on {url}{note}; latest -> {candidate.version}")
        return 0
    finally:
        await nc.drain()


async def _traffic(args: argparse.Namespace, settings: CascadeSettings, candidate: Any) -> Any:
    """The stream's labelled traffic for the candidate: a router's (small, large) prompts (PairData) or a
    scorer's answers (TrafficRows); the gate keeps the slice held back from both models."""
    from services.cli.export import parse_since
    from training.traffic import read_pairs

    url = args.from_nats or settings.nats.client_url
    if "pair" not in candidate.card:
        from training.scorer_traffic import held_back_rows, label_sources

        sources = tuple(candidate.card.get("label_sources") or label_sources(None))
        return await held_back_rows(settings, url=url, since=args.since, cards=[candidate.card], sources=sources)
    small, large = candidate.card["pair"]
    since = parse_since(args.since) if args.since else None
    data, _ = await read_pairs(settings, url=url, since=since, small=small, large=large)
    return data
