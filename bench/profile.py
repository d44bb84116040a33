"""Sampling the cascade's processes with py-spy while a benchmark runs, and summarising where CPU goes.

    python -m bench.profile DIR/gateway.txt [--top 25]

``start`` runs ``py-spy record`` (raw folded stacks) on each named process; ``finish`` waits for them
and prints, per process, the functions with the largest share of samples, own and inclusive. A share
of samples is robust to a noisy machine where latencies are not, which is why optimisations cite it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Sampler:
    name: str
    output: Path
    process: subprocess.Popen[bytes]


def start(pids: dict[str, int], folder: Path, *, seconds: float, rate: int = 250) -> list[Sampler]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    samplers = []
    for name, pid in pids.items():
        output = folder / f"{name}.txt"
        command = [spy, "record", "-p", str(pid), "-d", str(max(int(seconds), 1)), "-r", str(rate)]
        command += ["-f", "raw", "--nonblocking", "-o", str(output)]
        samplers.append(Sampler(name, output, subprocess.Popen(command, stdout=subprocess.DEVNULL)))
    return samplers


def finish(samplers: list[Sampler], *, top: int = 12) -> None:
    for sampler in samplers:
        sampler.process.wait()
        if sampler.output.exists():
            print(f"\n{sampler.name} ({sampler.output})")
            print(summary(sampler.output, top=top))


def summary(path: Path, *, top: int) -> str:
    """Top functions by own samples and by inclusive samples (idle event-loop waits excluded)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or _idle(frames[-1]):
            continue
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} busy samples"]
    lines += [f"  own {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += [f"  incl {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(2 * top)]
    return "\n".join(lines)


def _idle(frame: str) -> bool:
    return frame.startswith(("select (", "poll (", "epoll", "run (uvloop")) or "selectors.py" in frame


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", type=Path, nargs="+", help="py-spy raw (folded) output files")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.profiles:
        print(f"{path}\n{summary(path, top=args.top)}\n")


if __name__ == "__main__":
    main()
