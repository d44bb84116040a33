"""What recording request ids for Feedback costs: the outcome publisher's drain rate with and without
the per-request id record, and the latency of one Feedback lookup (a JetStream get by subject).

    python -m bench.seen [--requests 3000]

Runs its own nats-server with JetStream in a temporary folder. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from services.core import subjects
from services.core.nats import NatsServer, connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes import OutcomePublisher, SeenRequests, Spool, ensure_seen_stream, ensure_stream

OUTCOME_BYTES = 600  # about an OutcomeEvent of a two-attempt request without texts


async def drain_rate(nc, settings: OutcomeSettings, n: int, *, record_ids: bool, tag: str, spool_dir: Path) -> float:  # type: ignore[no-untyped-def]
    publisher = OutcomePublisher(nc, spool=Spool(spool_dir / tag, max_bytes=1 << 34))
    seen = SeenRequests(nc, publisher=publisher, settings=settings)
    start = time.perf_counter()
    publisher.start()
    for i in range(n):
        if record_ids:
            seen.record(f"{tag}-{i}")
        publisher.submit(subjects.OUTCOMES, f"outcome:{tag}-{i}", b"x" * OUTCOME_BYTES)
    await publisher.close(timeout_s=300)
    return n / (time.perf_counter() - start)


async def lookup_ms(nc, settings: OutcomeSettings, n: int, *, spool_dir: Path) -> list[float]:  # type: ignore[no-untyped-def]
    publisher = OutcomePublisher(nc, spool=Spool(spool_dir / "lookups", max_bytes=1 << 20))
    seen = SeenRequests(nc, publisher=publisher, settings=settings)
    out = []
    for i in range(n):
        start = time.perf_counter()
        found = await seen.seen(f"with-{i}" if i % 2 else f"unknown-{i}")
        out.append((time.perf_counter() - start) * 1e3)
        assert found == bool(i % 2)
    return out


async def main(requests: int) -> None:
    settings = OutcomeSettings()
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(data_dir=Path(tmp) / "js") as server:
            nc = await connect_nats(server.url, name="bench-seen")
            js = nc.jetstream()
            await ensure_stream(js, settings)
            await ensure_seen_stream(js, settings)
            without = await drain_rate(nc, settings, requests, record_ids=False, tag="without", spool_dir=Path(tmp))
            with_ids = await drain_rate(nc, settings, requests, record_ids=True, tag="with", spool_dir=Path(tmp))
            lookups = sorted(await lookup_ms(nc, settings, min(requests, 1000), spool_dir=Path(tmp)))
            await nc.drain()
    print(f"outcome publisher, {requests} requests: {without:.0f} requests/s without the id record")
    print(f"outcome publisher, {requests} requests: {with_ids:.0f} requests/s with it (two publishes each)")
    p50, p99 = statistics.median(lookups), lookups[int(0.99 * (len(lookups) - 1))]
    print(f"Feedback lookup (get by subject), {len(lookups)} ids: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
