"""Benchmark answer confidence on the request path: one answer at a time, features + ONNX.

    python -m bench.confidence [--model classifier/models/confidence] [--runs 300]

p50/p99 of the shipped scorer for answers of about 50, 500 and 2,000 tokens (4 characters a token,
cut from real MMLU-Pro responses when the data is there), each with one other answer of the same
length, a token log-probability per token and a router score: every signal present.
The section "cascade added latency per policy" is a hook for the gateway's end-to-end numbers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
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
def cascade_added_latency_per_policy(*, policies: tuple[str, ...] = ("cascade", "route")) -> dict[str, Stats]:
    """Hook for the lead: the latency the cascade adds per escalation policy, end to end through
    the gateway (router + small answer + confidence + escalation), beside the direct path. Not
    measured here yet: returns no numbers, and main() says so."""
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="scorer model dir (default: the shipped one)")
    parser.add_argument("--runs", type=int, default=300, help="timed calls per answer length")
    args = parser.parse_args()
    model = load_confidence("scorer", args.model)
    print(f"scorer {model.version}, one answer per call, every signal present, {args.runs} runs")
    print("| answer tokens | features p50 ms | features p99 ms | scorer p50 ms | scorer p99 ms |")
    print("|---|---|---|---|---|")
    for tokens, (feat, full) in scorer_latency(model, runs=args.runs).items():
        print(f"| {tokens} | {feat.p50_ms:.3f} | {feat.p99_ms:.3f} | {full.p50_ms:.3f} | {full.p99_ms:.3f} |")
    added = cascade_added_latency_per_policy()
    print("cascade added latency per policy: " + (str(added) if added else "not measured yet (hook for the lead)"))


if __name__ == "__main__":
    main()
