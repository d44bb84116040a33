"""`cascade outcomes export`: recorded traffic with its labels, as a routing-data Parquet file.

The file has the columns of shared/data/routing (prompt_id, dataset, task, subtask, prompt, model,
score, response), one row per (request, model that answered with a label; see training.labels), so
`cascade train fit --data FILE --small M --large M` and offline replays read it like a benchmark
file. ``prompt_id`` is the prompt's SHA-256: a prompt asked twice is one prompt with both answers.
Extra columns: request_id, tier, label_source, time. Only outcomes recorded with
``outcomes.store_prompt_text`` carry their prompt; rows without one are skipped and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.cli.outcomes import nats_url
from services.core.errors import CascadeError, InvalidRequest
from services.core.nats import connect_from_settings
from services.core.settings import CascadeSettings, load_settings
from training.labels import SOURCES, LabelRow, LabelSummary, label_rows, read_traffic, routing_columns

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """An ISO 8601 time (naive: UTC) or an age such as 30m, 12h, 7d."""
    if m := _RELATIVE.match(value):
        return datetime.now(UTC) - timedelta(**{_UNITS[m[2]]: float(m[1])})
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"--since {value!r} is not an ISO 8601 time or an age like 30m, 12h, 7d") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def main(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
        settings = load_settings(args.config)
        rows, summary = asyncio.run(collect(settings, url=args.nats, since=since))
    except CascadeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    written, no_prompt = write_parquet(rows, args.out)
    print(summary_line(summary, written=written, no_prompt=no_prompt, out=args.out), file=sys.stderr)
    return 0


async def collect(
    settings: CascadeSettings, *, url: str | None, since: datetime | None
) -> tuple[list[LabelRow], LabelSummary]:
    """Read every outcome and feedback event (since ``since``) and label them."""
    nc = await connect_from_settings(settings.nats, name="cascade-export", url=nats_url(settings, url), wait_s=10)
    try:
        traffic = await read_traffic(nc.jetstream(), stream=settings.outcomes.stream, since=since)
    finally:
        await nc.drain()
    tier_models = {name: getattr(t, t.backend).model for name, t in settings.tiers.items()}
    return label_rows(
        traffic.outcomes, traffic.feedback, window_s=settings.outcomes.feedback_window_s, tier_models=tier_models
    )


def write_parquet(rows: list[LabelRow], out: Path) -> tuple[int, int]:
    """Write the rows that have their prompt text; return (written, skipped for lack of a prompt)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("prompt_id", pa.string()),
            ("dataset", pa.string()),
            ("task", pa.string()),
            ("subtask", pa.string()),
            ("prompt", pa.string()),
            ("model", pa.string()),
            ("score", pa.float32()),
            ("response", pa.string()),
            ("request_id", pa.string()),
            ("tier", pa.string()),
            ("label_source", pa.string()),
            ("time", pa.timestamp("ms", tz="UTC")),
        ]
    )
    columns = routing_columns(rows)
    kept = columns["prompt_id"]
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), out, compression="zstd")
    return len(kept), len(rows) - len(kept)


def summary_line(summary: LabelSummary, *, written: int, no_prompt: int, out: Path) -> str:
    sources = ", ".join(f"{s} {summary.by_source[s]}" for s in SOURCES if summary.by_source[s])
    lines = [
        f"exported {written} rows from {summary.outcomes} outcomes to {out} (labels: {sources or 'none'})",
        f"skipped: {no_prompt} labelled rows without prompt text (outcomes.store_prompt_text was off), "
        f"{summary.unlabelled} answers without a label, {summary.no_model} without a model name",
        f"feedback: {summary.feedback} events, {summary.feedback_late} after the window, "
        f"{summary.feedback_orphan} for requests not among these outcomes",
    ]
    return "\n".join(lines)
