"""`cascade classify`: JSON lines {"prompt": ...} on stdin -> {"score": ...} lines on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TextIO

from classifier import RouterModel, load_model


def _prompts(stream: TextIO) -> Iterator[str]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f'line {number}: expected a JSON object {{"prompt": "..."}}') from None
        if not isinstance(prompt, str):
            raise ValueError(f"line {number}: prompt must be a string")
        yield prompt


def classify(*, model: RouterModel, stdin: TextIO, stdout: TextIO, batch_size: int) -> int:
    batch: list[str] = []
    for prompt in _prompts(stdin):
        batch.append(prompt)
        if len(batch) >= batch_size:
            _flush(model, batch, stdout)
    _flush(model, batch, stdout)
    return 0


def _flush(model: RouterModel, batch: list[str], stdout: TextIO) -> None:
    if batch:
        for score in model.score(batch):
            stdout.write(json.dumps({"score": float(score)}) + "\n")
        stdout.flush()
        batch.clear()


def run_classify(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    model = load_model(args.model)
    try:
        return classify(model=model, stdin=sys.stdin, stdout=sys.stdout, batch_size=args.batch_size)
    except ValueError as exc:
        print(f"cascade classify: {exc}", file=sys.stderr)
        return 2
