"""Training rows for the answer scorer: recorded answers with simulated signal availability.

Each row is one small-tier answer to one prompt, with ``k`` other answers drawn from the other
cheap models' answers to the same prompt (with repeats when ``k`` exceeds them, as self-consistency
samples repeat) and the router's score present or not. The label is ``score >= 0.5``.

Which models a file holds comes from the file (:func:`answer_models`): the large model is the one
with the best mean score (or ``--large``), every other model is a cheap one whose answers are scored
and drawn as others, weakest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from classifier.answers import final_answer
from classifier.confidence.features import FEATURE_NAMES, GROUPS, agreement_row, answer_row, logprob_row, router_row
from classifier.features import hand_features
from training.data import PairData, split_masks

# How many others a training row gets: no others, a second opinion, a few samples.
TRAIN_KS = (0, 1, 2, 4)
ROUTER_SHARE = 0.7  # share of a file's training rows that carry the router's score
# Named signal sets (groups of classifier.confidence.features.GROUPS); the others are zeroed.
SIGNAL_SETS: dict[str, tuple[str, ...]] = {
    "text": ("form", "length", "prompt"),
    "form": ("form",),
    "agreement": ("agreement",),
    "router": ("router",),
    "all": ("agreement", "form", "length", "prompt", "logprob", "router"),
    "all-but-prompt": ("agreement", "form", "length", "logprob", "router"),
    "agreement+form": ("agreement", "form", "logprob"),
}
# What the shipped model uses: the best escalation APGR, or within 0.01 of it, in every compare-scorer scenario.
DEFAULT_SIGNALS = "agreement+form"


@dataclass(frozen=True)
class Answers:
    """Every model's answer per prompt: ``frame`` has one row per prompt, ``answers`` per model."""

    frame: pd.DataFrame  # prompt_id, source, subtask, prompt, router
    scores: dict[str, np.ndarray]  # model -> score per prompt
    keys: dict[str, list[str]]  # model -> final-answer key per prompt
    text: dict[str, np.ndarray]  # model -> answer+prompt feature rows per prompt
    pool: tuple[str, ...] = ()  # the cheap models (others are drawn from them), weakest first
    large: str = ""  # the model escalated to

    def subset(self, mask: np.ndarray) -> Answers:
        idx = np.flatnonzero(mask)
        return Answers(
            frame=self.frame.iloc[idx].reset_index(drop=True),
            scores={m: s[idx] for m, s in self.scores.items()},
            keys={m: [k[i] for i in idx] for m, k in self.keys.items()},
            text={m: t[idx] for m, t in self.text.items()},
            pool=self.pool,
            large=self.large,
        )

    def __len__(self) -> int:
        return len(self.frame)


def answer_models(path: Path, *, large: str | None = None) -> tuple[tuple[str, ...], str]:
    """(cheap models weakest first, large model) of a file: the large one has the best mean score
    unless ``large`` names it."""
    means = pd.read_parquet(path, columns=["model", "score"]).groupby("model")["score"].mean()
    if large is not None and large not in means.index:
        raise ValueError(f"{path} has no answers of {large!r}; its models: {sorted(means.index)}")
    top = large or str(means.idxmax())
    cheap = means.drop(top).sort_values(kind="stable")
    if cheap.empty:
        raise ValueError(f"{path} has answers of one model only ({top}); the scorer needs cheap ones too")
    return tuple(str(m) for m in cheap.index), top


def load_answers(
    path: Path,
    *,
    models: Sequence[str],
    sample: int | None = None,
    seed: int = 0,
    pool: Sequence[str] = (),
    large: str = "",
) -> Answers:
    """Prompts every one of ``models`` answered, with their answers' keys and text features."""
    raw = pd.read_parquet(path, columns=["prompt_id", "subtask", "prompt", "model", "score", "response"])
    raw = raw[raw["model"].isin(models)]
    wide = raw.pivot_table(index="prompt_id", columns="model", values="score", aggfunc="first").dropna()
    ids = wide.index.to_numpy()
    if sample is not None and sample < len(ids):
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
    first = raw.drop_duplicates("prompt_id").set_index("prompt_id").loc[ids]
    frame = pd.DataFrame({"prompt_id": ids, "source": path.stem, "subtask": first["subtask"].to_numpy()})
    frame["prompt"] = first["prompt"].to_numpy()
    answers = Answers(frame=frame, scores={}, keys={}, text={}, pool=tuple(pool), large=large)
    responses = raw.set_index(["model", "prompt_id"])["response"].fillna("")
    prompt_rows = hand_features(frame["prompt"].tolist())
    for m in models:
        answers.scores[m] = wide.loc[ids, m].to_numpy(dtype=np.float64)
        _add_texts(answers, m, responses.loc[m].reindex(ids).fillna("").tolist(), prompt_rows)
    return answers


def _add_texts(answers: Answers, model: str, texts: list[str], prompt_rows: np.ndarray) -> None:
    """One model's final-answer keys and answer + prompt feature rows (the request path's functions)."""
    answers.keys[model] = [final_answer(t) for t in texts]
    prompts = answers.frame["prompt"]
    rows = [answer_row(p, t, k) for p, t, k in zip(prompts, texts, answers.keys[model], strict=True)]
    answers.text[model] = np.hstack([np.asarray(rows, dtype=np.float32), prompt_rows])


def split(answers: Answers, *, seed: int) -> dict[str, np.ndarray]:
    """The router's split by prompt id (``training.data.split_masks``): train/validation/test."""
    frame = answers.frame.assign(small=0.0, large=0.0)
    return split_masks(PairData(frame), seed=seed)


def add_router_scores(answers: Answers, model_dir: Path) -> None:
    """The router's difficulty score for every prompt (the default router in service)."""
    from classifier import load_model

    router = load_model(model_dir)
    prompts = answers.frame["prompt"].tolist()
    scores = [router.score(prompts[i : i + 512]) for i in range(0, len(prompts), 512)]
    answers.frame["router"] = np.concatenate(scores).astype(np.float64) if scores else np.zeros(0)


@dataclass(frozen=True)
class Rows:
    """Feature rows with their labels and what each row stands for."""

    x: np.ndarray
    y: np.ndarray
    small: np.ndarray  # the answer's score
    large: np.ndarray  # the large tier's score on the same prompt
    model: np.ndarray  # which model answered
    k: np.ndarray  # how many others the row has


def build_rows(
    answers: Answers,
    *,
    small_models: Sequence[str],
    ks: Sequence[int],
    router_share: float,
    seed: int,
    pool: Sequence[str] | None = None,
) -> Rows:
    """Rows for every (prompt, small model, k): ``k`` others drawn from ``pool`` (default: the
    answers' cheap models) minus the answerer."""
    rng = np.random.default_rng(seed)
    pool = answers.pool if pool is None else pool
    parts = [_rows_for(answers, m, [p for p in pool if p != m], k, router_share, rng) for m in small_models for k in ks]
    return concat_rows([Rows(*p) for p in parts])


def concat_rows(parts: Sequence[Rows]) -> Rows:
    return Rows(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Rows)))


def _rows_for(
    answers: Answers, model: str, pool: list[str], k: int, router_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    n = len(answers)
    agree = np.asarray([agreement_row(answers.keys[model][i], _draw(answers, pool, k, i, rng)) for i in range(n)])
    has_router = rng.random(n) < router_share
    scores = answers.frame["router"] if "router" in answers.frame else np.full(n, np.nan)
    router = np.asarray([router_row(s if h else None) for s, h in zip(scores, has_router, strict=True)])
    lp = np.tile(np.asarray(logprob_row(()), dtype=np.float32), (n, 1))
    x = np.hstack([agree.reshape(n, -1), answers.text[model], lp, router.reshape(n, -1)]).astype(np.float32)
    small = answers.scores[model]
    return x, (small >= 0.5).astype(np.int64), small, answers.scores[answers.large], np.full(n, model), np.full(n, k)


def _draw(answers: Answers, pool: list[str], k: int, i: int, rng: np.random.Generator) -> list[str]:
    if k == 0 or not pool:
        return []
    picks = rng.choice(len(pool), size=k, replace=k > len(pool))
    return [answers.keys[pool[j]][i] for j in picks]


def mask_columns(x: np.ndarray, signal_set: str) -> np.ndarray:
    """``x`` with every column outside ``signal_set``'s groups zeroed (the signal is absent)."""
    keep = {n for g in SIGNAL_SETS[signal_set] for n in GROUPS[g]}
    cols = np.array([n in keep for n in FEATURE_NAMES])
    return np.where(cols, x, np.float32(0.0))


def load_scored_answers(
    path: Path,
    *,
    small: Sequence[str],
    router: Path,
    sample: int | None,
    seed: int,
    large: str | None = None,
) -> Answers:
    """The answers of ``small`` models (none: every cheap one), every other cheap model and the large
    one (:func:`answer_models`), with the router's scores."""
    pool, top = answer_models(path, large=large)
    models = list(dict.fromkeys([*small, *pool, top]))
    answers = load_answers(path, models=models, sample=sample, seed=seed, pool=pool, large=top)
    add_router_scores(answers, router)
    return answers
