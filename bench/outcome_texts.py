"""What redaction and exploration add to a request's bookkeeping in the gateway (CPU, in process).

    .venv/bin/python bench/outcome_texts.py [--n 2000]

Builds the OutcomeEvent of an escalated request (prompt, small and large answer texts from real
MMLU-Pro rows when the data is there) with outcomes.store_prompt_text and store_answer_text on:
without redaction, with the built-ins email, phone, number, and with those plus a custom pattern.
Also times the exploration choice (a SHA-256 of the request id) and a capped check.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name shadows the package.
if sys.path and Path(sys.path[0]).resolve() == REPO / "bench":
    sys.path[0] = str(REPO)

from services.core.settings import CascadeSettings, ExplorationSettings, OutcomeSettings  # noqa: E402
from services.gateway import wire  # noqa: E402
from services.gateway.domain import Piece, Purpose, Usage  # noqa: E402
from services.gateway.explore import Exploration  # noqa: E402
from services.gateway.record import RequestRecord  # noqa: E402
from services.gateway.redact import Redactor  # noqa: E402
from services.gateway.requests import CascadeRequest  # noqa: E402
from services.tier.backends import Message  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "routing" / "mmlu_pro.parquet"


def texts(n: int) -> list[tuple[str, str, str]]:
    if DATA.exists():
        import pyarrow.parquet as pq

        rows = pq.read_table(DATA, columns=["prompt", "response"]).slice(0, 2 * n).to_pylist()
        return [(rows[i]["prompt"], rows[i]["response"], rows[i + 1]["response"]) for i in range(0, 2 * n - 1, 2)]
    prompt = "Contact ann@example.org or +1 555 010 0199. What is 17 * 23? " * 20
    return [(prompt, "It is 391. " * 30, "17 * 23 = 391. " * 30)] * n


def record(prompt: str, small: str, large: str, prices) -> RequestRecord:
    req = CascadeRequest(
        request_id="r",
        messages=(Message(role="user", content=prompt),),
        routed_text=prompt,
        max_tokens=512,
        temperature=None,
        stop=(),
        policy="cascade",
        tenant="",
    )
    rec = RequestRecord(request=req, prices=prices, large_tier="large", ladder=("small", "large"))
    for tier, purpose, text in (("small", Purpose.ANSWER, small), ("large", Purpose.ESCALATION, large)):
        a = rec.begin(tier, purpose)
        a.add(Piece(text=text))
        a.add(Piece(final=True, finish_reason="stop", usage=Usage(input_tokens=400, output_tokens=200)))
        rec.answered_by(a)
    return rec


def per_call_us(fn, items) -> tuple[float, float, float]:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], times[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    prices = {name: t.price for name, t in CascadeSettings().tiers.items()}
    records = [record(p, s, lg, prices) for p, s, lg in texts(args.n)]
    chars = statistics.mean(len(r.request.routed_text) + sum(len(a.text) for a in r.attempts) for r in records)
    print(f"{len(records)} escalated requests, {chars:.0f} stored characters each on average")
    custom = {"pattern": r"(?i)\bname: \w+", "replacement": "name: [name]"}
    for label, rules in [
        ("no redaction", ()),
        ("email, phone, number", ("email", "phone", "number")),
        ("email, phone, number, custom", ("email", "phone", "number", custom)),
    ]:
        redact = Redactor.from_settings(OutcomeSettings(redact=rules))  # type: ignore[arg-type]

        def build(rec: RequestRecord, redact: Redactor = redact) -> None:
            wire.outcome(rec, store_prompt_text=True, store_answer_text=True, redact=redact).SerializeToString()

        p50, p99, worst = per_call_us(build, records)
        print(f"outcome event, {label:<30} p50 {p50:8.1f} us  p99 {p99:8.1f} us  max {worst:8.1f} us")
    ids = [f"req-{i:08d}" for i in range(args.n * 10)]
    for label, settings in [
        ("choice, share 0.02", ExplorationSettings(share=0.02)),
        ("choice + caps, share 1", ExplorationSettings(share=1.0, max_usd_per_hour=1e9, max_share=1.0)),
    ]:
        e = Exploration(settings, ladder=("small", "large"), tiers=None)  # type: ignore[arg-type]
        requests = [dataclasses.replace(records[0].request, request_id=i) for i in ids]
        p50, p99, worst = per_call_us(e._explore, requests)
        print(f"exploration {label:<32} p50 {p50:8.1f} us  p99 {p99:8.1f} us  max {worst:8.1f} us")


if __name__ == "__main__":
    main()
