"""Benchmark answer confidence on the request path: one answer at a time, features + ONNX.

    python -m bench.confidence [--model classifier/models/confidence] [--runs 300]
                               [--policies cascade route small large] [--requests 300]

p50/p99 of the shipped scorer for answers of about 50, 500 and 2,000 tokens (4 characters a token,
cut from real MMLU-Pro responses when the data is there), each with one other answer of the same
length, a token log-probability per token and a router score: every signal present.
Then the latency the whole cascade adds per policy, at concurrency 1, end to end through a
running system (see cascade_added_latency_per_policy; `--policies` with no names skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from classifier.confidence import ConfidenceModel, Evidence, load_confidence
from classifier.confidence.features import features

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "routing" / "mmlu_pro.parquet"
TOKENS = (50, 500, 2000)
CHARS_PER_TOKEN = 4
PROMPT = "Which of the following best describes the role of enzymes in metabolism?\nOptions: ['A', 'B', 'C', 'D']"


@dataclass(frozen=True)
class Stats:
    p50_ms: float
    p99_ms: float


def corpus() -> str:
    """Real answer text to cut answers from (a fixed filler when the data is absent)."""
    if DATA.exists():
        import pyarrow.parquet as pq

        responses = pq.read_table(DATA, columns=["response"]).column("response").to_pylist()[:3000:7]
        return "\n".join(r for r in responses if r)
    return "We refer to the definition of enzymes: they lower activation energy. " * 400


def answer_of(text: str, tokens: int) -> str:
    return text[: tokens * CHARS_PER_TOKEN - 20] + " The answer is (C)."


def evidence_of(answer: str, other: str, rng: np.random.Generator) -> Evidence:
    logprobs = rng.normal(-0.4, 0.5, size=max(len(answer) // CHARS_PER_TOKEN, 1)).clip(max=0.0)
    return Evidence(prompt=PROMPT, answer=answer, others=[other], logprobs=logprobs.tolist(), router_score=0.4)


def timed(fn: Callable[[], object], *, runs: int) -> Stats:
    for _ in range(10):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return Stats(p50_ms=float(np.percentile(times, 50)), p99_ms=float(np.percentile(times, 99)))


def scorer_latency(model: ConfidenceModel, *, runs: int) -> dict[int, tuple[Stats, Stats]]:
    """Per answer length: (features only, features + ONNX) for a batch of one."""
    text, rng = corpus(), np.random.default_rng(0)
    out = {}
    for tokens in TOKENS:
        other = answer_of(text[len(text) // 2 :], tokens)
        batch = [evidence_of(answer_of(text, tokens), other, rng)]
        out[tokens] = (timed(partial(features, batch), runs=runs), timed(partial(model.confidence, batch), runs=runs))
    return out


# ---- cascade added latency per policy ---------------------------------------------------------
def cascade_added_latency_per_policy(
    *, policies: Sequence[str], requests: int, confidence: str = "scorer"
) -> dict[str, tuple[Stats, Stats]]:
    """Per policy, at concurrency 1, end to end through one running cascade (`cascade up`: gRPC ->
    gateway -> NATS -> router -> tier worker -> bench/upstream.py): (direct path, cascade).
    The escalation threshold is 0, so every small answer is scored and none escalates: the added
    latency is routing plus the decision, not a second generation."""
    from bench.overhead import running_cascade

    async def measure() -> dict[str, tuple[Stats, Stats]]:
        out = {}
        async with running_cascade(confidence=confidence, max_tokens=16) as bench:
            for policy in policies:
                rows = await bench.compare(policy, requests=requests, concurrency=1)
                out[policy] = (Stats(*rows["direct"][:2]), Stats(*rows["cascade"][:2]))
        return out

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="scorer model dir (default: the shipped one)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per answer length")
    parser.add_argument(
        "--policies",
        nargs="*",
        default=["cascade", "route", "small", "large"],
        help="policies whose end-to-end added latency to measure (none: skip; default: %(default)s)",
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per policy and path")
    args = parser.parse_args()
    model = load_confidence("scorer", args.model)
    print(f"scorer {model.version}, one answer per call, every signal present, {args.runs} runs")
    print("| answer tokens | features p50 ms | features p99 ms | scorer p50 ms | scorer p99 ms |")
    print("|---|---|---|---|---|")
    for tokens, (feat, full) in scorer_latency(model, runs=args.runs).items():
        print(f"| {tokens} | {feat.p50_ms:.3f} | {feat.p99_ms:.3f} | {full.p50_ms:.3f} | {full.p99_ms:.3f} |")
    if not args.policies:
        return
    print(f"\ncascade added latency per policy, concurrency 1, {args.requests} requests each, confidence scorer")
    print("| policy | direct p50 ms | cascade p50 ms | added p50 ms | added p99 ms |")
    print("|---|---|---|---|---|")
    for policy, (d, c) in cascade_added_latency_per_policy(policies=args.policies, requests=args.requests).items():
        print(f"| {policy} | {d.p50_ms:.2f} | {c.p50_ms:.2f} | {c.p50_ms - d.p50_ms:.2f} | {c.p99_ms - d.p99_ms:.2f} |")


if __name__ == "__main__":
    main()
