"""`cascade confidence`: JSON lines of answers on stdin -> {"confidence": p} lines on stdout.

Each line: ``{"prompt": str, "answer": str, "logprobs"?: [float], "others"?: [str], "router_score"?: float}``.
Base install only (numpy + onnxruntime): no scikit-learn, no pandas.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from classifier.confidence import ConfidenceModel, Evidence, load_confidence
from services.core.errors import CascadeError

BATCH = 64


class BadLine(ValueError):
    """A malformed input line; the message names the line number."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "confidence",
        help="score answers (JSON lines on stdin) with an answer-confidence model",
        description='Read JSON lines {"prompt": str, "answer": str, "logprobs"?: [float], "others"?: [str], '
        '"router_score"?: float} on stdin and write {"confidence": p} lines in the same order: p is the '
        "probability that the answer is acceptable. Optional fields that are absent are signals the model "
        "does without. A malformed line stops the run with its line number on stderr and exit status 2.",
    )
    p.add_argument("--model", type=Path, metavar="DIR", help="model directory (default: the shipped scorer)")
    p.add_argument("--name", default="scorer", help="confidence model by registry name (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH, help="answers per model run (default: %(default)s)")
    return p


def main(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("cascade confidence: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        model = load_confidence(args.name, args.model)
    except CascadeError as exc:
        print(f"cascade confidence: {exc}", file=sys.stderr)
        return 1
    try:
        return score_lines(model=model, stdin=sys.stdin, stdout=sys.stdout, batch_size=args.batch_size)
    except BadLine as exc:
        print(f"cascade confidence: {exc}", file=sys.stderr)
        return 2


def score_lines(*, model: ConfidenceModel, stdin: TextIO, stdout: TextIO, batch_size: int) -> int:
    batch: list[Evidence] = []
    for evidence in read_evidence(stdin):
        batch.append(evidence)
        if len(batch) >= batch_size:
            _flush(model, batch, stdout)
    _flush(model, batch, stdout)
    return 0


def _flush(model: ConfidenceModel, batch: list[Evidence], stdout: TextIO) -> None:
    if batch:
        for p in model.confidence(batch):
            stdout.write(json.dumps({"confidence": float(p)}) + "\n")
        stdout.flush()
        batch.clear()


def read_evidence(stream: TextIO) -> Iterator[Evidence]:
    """One Evidence per non-blank line; BadLine names the first malformed line."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield parse_line(line, number=number)


def parse_line(line: str, *, number: int) -> Evidence:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"line {number}: expected a JSON object")
    for field in ("prompt", "answer"):
        if not isinstance(obj.get(field), str):
            raise BadLine(f"line {number}: {field!r} is required and must be a string")
    return Evidence(
        prompt=obj["prompt"],
        answer=obj["answer"],
        logprobs=_list(obj, "logprobs", _is_number, "numbers", number),
        others=_list(obj, "others", lambda v: isinstance(v, str), "strings", number),
        router_score=_router_score(obj, number),
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def _list(obj: dict[str, Any], field: str, ok: Any, what: str, number: int) -> tuple[Any, ...]:
    value = obj.get(field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(ok(v) for v in value):
        raise BadLine(f"line {number}: {field!r} must be a list of {what}")
    return tuple(float(v) if what == "numbers" else v for v in value)


def _router_score(obj: dict[str, Any], number: int) -> float | None:
    value = obj.get("router_score")
    if value is None:
        return None
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise BadLine(f"line {number}: 'router_score' must be a number in [0, 1]")
    return float(value)
