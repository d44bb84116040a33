"""``python -m bench.fuzz [--examples N] [--only NAME ...]``: every decoder, N inputs each (default 10,000)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from .run import fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per decoder (default: %(default)s)")
    parser.add_argument("--only", nargs="*", help="decoder names to fuzz (default: all)")
    args = parser.parse_args(argv)
    # Every refused input is logged by its service; the counts below are the report.
    logging.basicConfig(level=logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory(prefix="cascade-fuzz-") as tmp:
        for stats in fuzz(args.examples, workdir=Path(tmp), only=args.only):
            results.append(stats)
            print(stats.line(), flush=True)
            for crash in stats.crashes[:5]:
                print(f"  crash: {crash}")
    crashes = sum(len(s.crashes) for s in results)
    hangs = sum(s.hangs for s in results)
    inputs = sum(s.inputs for s in results)
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"fuzz: decoders={len(results)} inputs={inputs} crashes={crashes} hangs={hangs}")
    return 0 if crashes == hangs == 0 and all(s.still_serving for s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
