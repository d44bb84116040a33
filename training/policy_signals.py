"""Per-prompt signals for policy replay: the router's score, the confidence of the small answer
without and with the second opinion, token costs, generation times and measured overheads."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from classifier import RouterModel
from classifier.confidence import ConfidenceModel, Evidence
from training.evaluation import CHARS_PER_TOKEN, Price
from training.policy_sim import Replay

BATCH = 256
# Single calls timed for the router's and the confidence model's medians.
TIMED_CALLS = 200


@dataclass(frozen=True, kw_only=True)
class Speeds:
    """Assumed decoding speed of one request, tokens per second (no measured timings exist)."""

    small: float
    second: float


def model_card(model: Any, path: Path | None) -> dict[str, Any]:
    """A model's card: its ``card`` attribute, else ``path/model_card.json``, else empty."""
    card = getattr(model, "card", None)
    if isinstance(card, dict):
        return card
    file = path / "model_card.json" if path is not None and path.is_dir() else None
    return json.loads(file.read_text()) if file is not None and file.is_file() else {}


def split_seeds(cards: Sequence[dict[str, Any]], *, stem: str) -> list[int]:
    """Split seeds of the models that may have trained on file ``stem`` (seed 0 when none did).

    A card with a split but no ``training_data`` counts as trained on every file, to be safe."""
    seeds = [int(c["split"].get("seed", 0)) for c in cards if "split" in c and _may_have_trained_on(c, stem)]
    return list(dict.fromkeys(seeds)) or [0]


def _may_have_trained_on(card: dict[str, Any], stem: str) -> bool:
    files = card.get("training_data")
    return files is None or stem in {Path(p).stem for p in files}


def router_scores(router: RouterModel, prompts: list[str]) -> np.ndarray:
    chunks = [router.score(prompts[i : i + BATCH]) for i in range(0, len(prompts), BATCH)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def evidence(frame: pd.DataFrame, scores: np.ndarray, *, with_second: bool) -> list[Evidence]:
    seconds = frame["text_second"] if with_second else [None] * len(frame)
    return [
        Evidence(prompt=p, answer=a, others=(s,) if s is not None else (), router_score=float(r))
        for p, a, s, r in zip(frame["prompt"], frame["text_small"], seconds, scores, strict=True)
    ]


def confidences(model: ConfidenceModel, items: list[Evidence]) -> np.ndarray:
    chunks = [model.confidence(items[i : i + BATCH]) for i in range(0, len(items), BATCH)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def median_ms(call: Callable[[Any], object], items: Sequence[Any]) -> float:
    """Median wall time of one call per item, in ms, over up to TIMED_CALLS items."""
    times = []
    for item in items[:TIMED_CALLS]:
        start = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times) if times else 0.0


def tokens(texts: pd.Series) -> np.ndarray:
    return texts.str.len().to_numpy(dtype=np.float64) / CHARS_PER_TOKEN


def build_replay(
    frame: pd.DataFrame,
    *,
    router: RouterModel,
    confidence: ConfidenceModel,
    prices: dict[str, Price],
    speeds: Speeds,
) -> Replay:
    """Score every prompt and answer of ``frame`` and price each tier's answer."""
    scores = router_scores(router, frame["prompt"].tolist())
    alone = evidence(frame, scores, with_second=False)
    paired = evidence(frame, scores, with_second=True)
    prompt_tokens = tokens(frame["prompt"])

    def cost(role: str) -> np.ndarray:
        p = prices[role]
        return (prompt_tokens * p.input + tokens(frame[f"text_{role}"]) * p.output) / 1e6

    return Replay(
        router=scores,
        conf_alone=confidences(confidence, alone),
        conf_with=confidences(confidence, paired),
        q_small=frame["score_small"].to_numpy(dtype=np.float64),
        q_large=frame["score_large"].to_numpy(dtype=np.float64),
        cost_small=cost("small"),
        cost_second=cost("second"),
        cost_large=cost("large"),
        ms_small=tokens(frame["text_small"]) / speeds.small * 1e3,
        ms_second=tokens(frame["text_second"]) / speeds.second * 1e3,
        router_ms=median_ms(lambda p: router.score([p]), frame["prompt"].tolist()),
        confidence_ms=median_ms(lambda e: confidence.confidence([e]), paired),
    )
