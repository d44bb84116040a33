"""Feeding each target hypothesis-generated inputs and counting how each was handled."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from .inputs import payloads
from .targets import Target, fuzz_system

# An input not handled within this long is a hang (a reply is due in milliseconds).
HANG_S = 10.0


@dataclass
class Stats:
    name: str
    inputs: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    hangs: int = 0
    slowest_ms: float = 0.0
    still_serving: bool = False

    def line(self) -> str:
        kinds = ", ".join(f"{k}={n}" for k, n in self.kinds.most_common())
        return (
            f"{self.name}: inputs={self.inputs} crashes={len(self.crashes)} hangs={self.hangs} "
            f"slowest={self.slowest_ms:.1f}ms still_serving={'yes' if self.still_serving else 'NO'} | {kinds}"
        )


async def _feed(target: Target, data: bytes, stats: Stats) -> None:
    started = time.perf_counter()
    try:
        kind = await asyncio.wait_for(target.feed(data), HANG_S)
    except TimeoutError:
        stats.hangs += 1
        kind = "HANG"
    except Exception as exc:  # anything escaping a handler is what this looks for
        stats.crashes.append(f"{exc!r} on {data[:64]!r} ({len(data)} bytes)")
        kind = "CRASH"
    stats.inputs += 1
    stats.kinds[kind] += 1
    stats.slowest_ms = max(stats.slowest_ms, (time.perf_counter() - started) * 1e3)


def fuzz_target(loop: asyncio.AbstractEventLoop, target: Target, examples: int) -> Stats:
    """Feed ``target`` ``examples`` generated inputs, then check a well-formed one is still answered ok."""
    stats = Stats(target.name)
    # Only generation: an input that crashes is counted, never raised, so there is nothing to shrink.
    run_settings = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )

    @run_settings
    @given(payloads([target.valid()], limit=target.limit))
    def one(data: bytes) -> None:
        loop.run_until_complete(_feed(target, data, stats))

    one()
    after = Stats(target.name)
    loop.run_until_complete(_feed(target, target.valid(), after))
    stats.still_serving = after.kinds["ok"] == 1
    return stats


def fuzz(examples: int, *, workdir: Path, only: Iterable[str] | None = None) -> Iterator[Stats]:
    """Fuzz every target (or those named in ``only``) on a fresh system in ``workdir``, yielding each's Stats."""
    loop = asyncio.new_event_loop()
    system = fuzz_system(workdir)
    try:
        running = loop.run_until_complete(system.__aenter__())
        wanted = set(only) if only is not None else None
        try:
            for target in running.targets:
                if wanted is None or target.name in wanted:
                    yield fuzz_target(loop, target, examples)
        finally:
            loop.run_until_complete(system.__aexit__(None, None, None))
    finally:
        loop.close()
