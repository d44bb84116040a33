"""Recorded answers of three tiers per prompt (small, second opinion, large) for policy replay.

One row per prompt: the prompt, its category, each tier's score and full answer text. Only files
with recorded responses can be replayed (mmlu_pro): agreement and answer scorers read the text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from classifier import RouterModel
from classifier.confidence import ConfidenceModel, load_confidence
from services.core.errors import CascadeError
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, CascadeSettings
from training.data import PairData, sample, split_masks

ROLES = ("small", "second", "large")
# (small, second opinion, large) for each shipped file that has responses, keyed by file stem.
DEFAULT_TRIPLES: dict[str, tuple[str, str, str]] = {
    "mmlu_pro": ("Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"),
}


@dataclass(frozen=True, kw_only=True)
class Triple:
    small: str
    second: str
    large: str

    def names(self) -> dict[str, str]:
        return {"small": self.small, "second": self.second, "large": self.large}


def triple_for(path: Path, *, small: str | None, second: str | None, large: str | None) -> Triple:
    """The file's default triple with any model the flags name swapped in."""
    default = DEFAULT_TRIPLES.get(path.stem)
    if default is None and None in (small, second, large):
        raise ValueError(f"no default models for {path}; give --small, --second and --large")
    d_small, d_second, d_large = default or ("", "", "")
    return Triple(small=small or d_small, second=second or d_second, large=large or d_large)


def load_replay(path: Path, triple: Triple | dict[str, str]) -> pd.DataFrame:
    """Columns: prompt_id, prompt, category, source, score_<role>, text_<role> for each role
    (the triple's, or any role -> model mapping, e.g. one role per tier of a longer list)."""
    names = triple if isinstance(triple, dict) else triple.names()
    cols = ["prompt_id", "prompt", "subtask", "model", "score", "response"]
    raw = pd.read_parquet(path, columns=cols, filters=[("model", "in", list(set(names.values())))])
    missing = set(names.values()) - set(raw["model"].unique())
    if missing:
        raise ValueError(f"{path} has no answers of {sorted(missing)}")
    raw = raw.drop_duplicates(["prompt_id", "model"]).set_index(["prompt_id", "model"])
    first = raw.reset_index().drop_duplicates("prompt_id").set_index("prompt_id")
    frame = pd.DataFrame({"prompt": first["prompt"], "category": first["subtask"].fillna("")})
    for role, model in names.items():
        rows = raw.xs(model, level="model")
        frame[f"score_{role}"] = rows["score"].astype(np.float64)
        frame[f"text_{role}"] = rows["response"]
    frame = frame.dropna(subset=[f"{k}_{role}" for role in names for k in ("score", "text")])
    frame["source"] = path.stem
    return frame.rename_axis("prompt_id").reset_index()


def held_out_mask(frame: pd.DataFrame, *, split: str, seeds: Sequence[int]) -> np.ndarray:
    """``split`` of the first seed's prompt-id split, minus the train split of every other seed,
    so no prompt any of the models was trained on is ever used."""
    data = PairData(frame)
    mask = split_masks(data, seed=seeds[0])[split]
    for seed in seeds[1:]:
        mask &= ~split_masks(data, seed=seed)["train"]
    return np.asarray(mask, dtype=bool)


def filter_categories(frame: pd.DataFrame, *, keep: Sequence[str] | None, drop: Sequence[str] | None) -> pd.DataFrame:
    """Only the categories in ``keep`` (when given), none of those in ``drop``."""
    known = set(frame["category"])
    unknown = (set(keep or ()) | set(drop or ())) - known
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {sorted(known)}")
    mask = np.ones(len(frame), dtype=bool)
    if keep:
        mask &= frame["category"].isin(list(keep)).to_numpy()
    if drop:
        mask &= ~frame["category"].isin(list(drop)).to_numpy()
    return frame[mask].reset_index(drop=True)


def sample_frame(frame: pd.DataFrame, *, n: int | None, seed: int) -> pd.DataFrame:
    """``n`` random prompts (all when n is None or larger than the frame)."""
    return frame if n is None else sample(PairData(frame), n=n, seed=seed).frame


def parse_categories(spec: str | None) -> list[str] | None:
    """``"law,math"`` -> ["law", "math"]; None stays None."""
    return None if spec is None else [c.strip() for c in spec.split(",") if c.strip()]


def load_confidence_model(
    name: str | None, path: Path | None, settings: CascadeSettings
) -> tuple[ConfidenceModel, Path | None] | None:
    """The confidence model to replay (``--confidence``/``--confidence-model``, else the config's), with its
    files; None after printing why it cannot load."""
    name = name or settings.escalation.confidence
    path = path or settings.escalation.confidence_model
    try:
        model = load_confidence(name, path)
    except CascadeError as exc:
        print(
            f"cannot load confidence model {name!r}: {exc.message}\n"
            "choose another with --confidence NAME (e.g. agreement) or give its files with --confidence-model DIR",
            file=sys.stderr,
        )
        return None
    return model, path or (DEFAULT_CONFIDENCE_MODEL if name == "scorer" else None)


def route_threshold(settings: CascadeSettings, router: RouterModel) -> float:
    """The threshold a router service applies (services/router/policy.py), calibration aside."""
    r = settings.router
    if r.threshold is not None:
        return r.threshold
    if r.target_large_share is not None:
        return router.threshold_for(large_share=r.target_large_share)
    return router.default_threshold
