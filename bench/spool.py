"""What the outcome journal costs: the work each request adds, and how fast a spool drains.

    python -m bench.spool [--events 5000] [--payload-bytes 1000] [--dir DIR]

1. Per event, on the gateway's event loop, for each fsync policy: ``Spool.submit`` (the record
   appended to the buffer), ``Spool.settled`` (the buffer written: one ``write``, what an answer
   waits for) and ``Spool.ack`` (a DONE record; segments deleted in a thread once all is done).
2. Draining: ``--events`` events left in a spool, published by a starting OutcomePublisher to a
   real nats-server (JetStream, file storage), one publish in flight and 64 (the default);
   events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from services.core import subjects
from services.core.nats import NatsServer, connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes import OutcomePublisher, Spool, ensure_stream


async def spool_costs(directory: Path, *, events: int, payload: bytes, fsync: str) -> tuple[float, float, float]:
    """Event-loop microseconds per submit, per settled (one write each, as a request at concurrency 1)
    and per ack (medians)."""
    spool = Spool(directory, max_bytes=1 << 34, fsync=fsync)  # type: ignore[arg-type]
    spool.open()
    submit_s, settle_s, ack_s = [], [], []
    handles = []
    for i in range(events):
        t0 = time.perf_counter()
        event = spool.submit(subjects.OUTCOMES, f"outcome:{i}", payload)
        t1 = time.perf_counter()
        assert event is not None
        spool.settled()
        t2 = time.perf_counter()
        submit_s.append(t1 - t0)
        settle_s.append(t2 - t1)
        handles.append(event)
        if i % 20 == 0:
            await asyncio.sleep(0)  # the event loop between requests: fsyncs and deletes go on in the thread
    for event in handles:
        t0 = time.perf_counter()
        spool.ack(event)
        ack_s.append(time.perf_counter() - t0)
    await spool.close()
    return tuple(statistics.median(x) * 1e6 for x in (submit_s, settle_s, ack_s))  # type: ignore[return-value]


async def drain_rate(directory: Path, *, events: int, payload: bytes, window: int) -> float:
    """Events per second a starting publisher sends from a full spool (as after a crash or an outage)."""
    spool_dir = directory / f"spool-drain-{window}"
    left = Spool(spool_dir, max_bytes=1 << 34, fsync="never")
    left.open()
    for i in range(events):
        left.submit(subjects.OUTCOMES, f"outcome:{window}:{i}", payload)
    await left.close()
    settings = OutcomeSettings()
    async with NatsServer(data_dir=directory / f"nats-{window}") as server:
        nc = await connect_nats(server.url, name="bench-spool")
        try:
            await ensure_stream(nc.jetstream(), settings)
            publisher = OutcomePublisher(nc, spool=Spool(spool_dir, max_bytes=1 << 34), window=window)
            t0 = time.perf_counter()
            publisher.start()
            while publisher.pending:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - t0
            await publisher.close()
            return events / elapsed
        finally:
            await nc.drain()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--payload-bytes", type=int, default=1000)
    parser.add_argument("--dir", type=Path, help="where to spool (default: a temporary folder)")
    args = parser.parse_args()
    payload = os.urandom(args.payload_bytes)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        print(f"spool in {base} ({args.events} events of {args.payload_bytes} bytes)")
        for fsync in ("never", "batch", "always"):
            sub, settle, ack = await spool_costs(
                base / f"spool-{fsync}", events=args.events, payload=payload, fsync=fsync
            )
            print(
                f"fsync={fsync:6s}  event loop per event: submit p50 {sub:5.1f} us, settled (the write) p50 "
                f"{settle:5.1f} us, ack p50 {ack:5.1f} us"
            )
        for window in (1, 64):
            rate = await drain_rate(base, events=args.events, payload=payload, window=window)
            print(f"drain a full spool: {rate:7,.0f} events/s to JetStream (window {window}: publishes in flight)")


if __name__ == "__main__":
    asyncio.run(main())
