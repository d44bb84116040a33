"""Benchmark the router model on the request path: latency, throughput, memory.

    .venv/bin/python bench/classifier.py [--model classifier/models/default]

Single-prompt p50/p99 at about 50, 500 and 5,000 tokens (4 characters a token, cut from
real MMLU-Pro prompts when the data is there), batch throughput, and resident memory.
Also times the same graph with 2 intra-op threads, to check the 1-thread choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name shadows the package.
if sys.path and Path(sys.path[0]).resolve() == REPO / "bench":
    sys.path[0] = str(REPO)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from classifier import load_model, session_options  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "routing" / "mmlu_pro.parquet"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def corpus() -> str:
    if DATA.exists():
        import pyarrow.parquet as pq

        prompts = pq.read_table(DATA, columns=["prompt"]).column("prompt").to_pylist()[:4000:5]
        return "\n\n".join(prompts)
    words = [
        "what",
        "is",
        "the",
        "derivative",
        "of",
        "x",
        "squared",
        "times",
        "the",
        "sine",
        "of",
        "x",
        "and",
        "why",
        "does",
        "it",
        "matter",
    ]
    return " ".join(words[i % len(words)] for i in range(40000))


def timed(fn, repeats: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    for _ in range(min(20, repeats)):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e3


@dataclasses.dataclass
class Line:
    name: str
    ms: np.ndarray

    def __str__(self) -> str:
        p50, p99 = np.percentile(self.ms, [50, 99])
        return f"{self.name:<34} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   max {self.ms.max():7.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "classifier" / "models" / "default"))
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    rss0 = rss_mb()
    model = load_model(args.model)
    rss1 = rss_mb()
    text = corpus()
    print(f"model {model.version} ({model.card['feature_set']} / {model.card['family']}), pair {model.pair}")
    print(f"cpus {os.cpu_count()}, onnxruntime {ort.__version__}, intra_op_num_threads=1, sequential")
    for tokens in (50, 500, 5000):
        prompt = [text[: tokens * 4]]
        reps = args.repeats if tokens < 5000 else args.repeats // 4
        print(Line(f"single prompt ~{tokens} tokens", timed(lambda p=prompt: model.score(p), reps)))
    batch = [text[i * 2000 : (i + 1) * 2000] for i in range(64)]
    ms = timed(lambda: model.score(batch), 50)
    print(f"{'batch of 64 x ~500 tokens':<34} {64 / (np.median(ms) / 1e3):8.0f} prompts/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"RSS: {rss0:.0f} MB before load, {rss1:.0f} MB after load (model: +{rss1 - rss0:.0f} MB), "
        f"{rss_mb():.0f} MB after bench incl. the parquet corpus (peak {peak:.0f} MB)"
    )
    compare_threads(model.path, text, args.repeats)
    return 0


def compare_threads(path: Path, text: str, repeats: int) -> None:
    """The same graph with 2 intra-op threads and parallel execution, for comparison."""
    model = load_model(path)
    opts = session_options()
    opts.intra_op_num_threads = 2
    opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    model._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    for tokens in (500, 5000):
        prompt = [text[: tokens * 4]]
        reps = repeats if tokens < 5000 else repeats // 4
        print(Line(f"[2 threads] ~{tokens} tokens", timed(lambda p=prompt: model.score(p), reps)))


if __name__ == "__main__":
    raise SystemExit(main())
