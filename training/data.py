"""Routing outcome data: one row per prompt with the small and the large tier's scores."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The (small, large) pair each shipped data file is trained on, keyed by file stem.
DEFAULT_PAIRS: dict[str, tuple[str, str]] = {
    "mmlu_pro": ("Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct"),
    "llmrouter": ("mistral-7b-instruct-v0.3", "llama-3.1-nemotron-51b-instruct"),
    "routellm_mmlu": ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"),
}

LABELS = {
    "large-wins": "1 when the large tier answers well and the small tier does not (large > small)",
    "small-fails": "1 when the small tier's answer is wrong (small < 0.5)",
}


@dataclass(frozen=True)
class PairData:
    """Per-prompt outcomes for one (small, large) pair."""

    frame: pd.DataFrame  # columns: prompt_id, prompt, source, small, large, out_small, out_large

    @property
    def prompts(self) -> list[str]:
        return self.frame["prompt"].tolist()

    @property
    def small(self) -> np.ndarray:
        return self.frame["small"].to_numpy(dtype=np.float64)

    @property
    def large(self) -> np.ndarray:
        return self.frame["large"].to_numpy(dtype=np.float64)

    def labels(self, kind: str) -> np.ndarray:
        if kind == "large-wins":
            return (self.large > self.small).astype(np.int64)
        if kind == "small-fails":
            return (self.small < 0.5).astype(np.int64)
        raise ValueError(f"unknown label {kind!r}; known: {sorted(LABELS)}")

    def subset(self, mask: np.ndarray) -> PairData:
        return PairData(self.frame[mask].reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.frame)


def parse_pair(spec: str) -> tuple[str, str, str]:
    """``FILE=SMALL,LARGE`` -> (file stem, small, large)."""
    file_part, sep, models = spec.partition("=")
    small, comma, large = models.partition(",")
    if not sep or not comma or not small or not large:
        raise ValueError(f"--pair wants FILE=SMALL,LARGE, got {spec!r}")
    return Path(file_part).stem, small, large


def pair_overrides(
    pairs: Sequence[str] | None, *, small: str | None, large: str | None, files: Sequence[str | Path]
) -> dict[str, tuple[str, str]]:
    """Per-file pairs from ``--pair FILE=SMALL,LARGE`` specs; ``small``/``large`` apply to every file."""
    overrides = {stem: (s, lg) for stem, s, lg in map(parse_pair, pairs or [])}
    if bool(small) != bool(large):
        raise ValueError("give both --small and --large, or neither")
    if small and large:
        for path in files:
            overrides.setdefault(Path(path).stem, (small, large))
    return overrides


def pair_for(path: Path, overrides: dict[str, tuple[str, str]]) -> tuple[str, str]:
    stem = path.stem
    if stem in overrides:
        return overrides[stem]
    if stem in DEFAULT_PAIRS:
        return DEFAULT_PAIRS[stem]
    raise ValueError(f"no (small, large) pair known for {path}; give --pair {stem}=SMALL,LARGE")


def load_pair(path: Path, *, small: str, large: str) -> PairData:
    """Read one outcome file and keep the prompts both models answered."""
    cols = ["prompt_id", "prompt", "model", "score", "response"]
    raw = pd.read_parquet(path, columns=cols, filters=[("model", "in", [small, large])])
    models = set(raw["model"].unique())
    if models != {small, large}:
        raise ValueError(f"{path} lacks model(s) {sorted({small, large} - models)}")
    return pair_frame(raw.assign(source=path.stem), small=small, large=large)


def pair_frame(raw: pd.DataFrame, *, small: str, large: str) -> PairData:
    """Long rows (prompt_id, prompt, model, score, response, source) -> one row per (source, prompt)
    that both models answered; a prompt answered more than once gets its mean score."""
    raw = raw[raw["model"].isin([small, large])].assign(out_chars=lambda f: f["response"].str.len())
    index = ["source", "prompt_id"]
    scores = raw.pivot_table(index=index, columns="model", values="score", aggfunc="mean")
    out = raw.pivot_table(index=index, columns="model", values="out_chars", aggfunc="mean")
    frame = pd.DataFrame(
        {
            "prompt": raw.drop_duplicates(index).set_index(index)["prompt"],
            "small": scores.get(small),
            "large": scores.get(large),
            "out_small": out.get(small),
            "out_large": out.get(large),
        }
    ).dropna(subset=["small", "large"])
    return PairData(frame.reset_index())


def load_files(paths: list[Path], *, overrides: dict[str, tuple[str, str]]) -> PairData:
    parts = []
    for path in paths:
        small, large = pair_for(path, overrides)
        parts.append(load_pair(path, small=small, large=large))
    return PairData(pd.concat([p.frame for p in parts], ignore_index=True))


def load_data_files(
    files: Sequence[str],
    *,
    pairs: Sequence[str] | None,
    small: str | None,
    large: str | None,
    n: int | None = None,
    seed: int = 0,
) -> tuple[PairData, dict[str, tuple[str, str]]]:
    """The ``--data`` files (``--pair``, ``--small``/``--large`` as in ``pair_overrides``), ``n`` prompts
    of them sampled when given, and the (small, large) pair of each file by stem."""
    overrides = pair_overrides(pairs, small=small, large=large, files=files)
    paths = [Path(p) for p in files]
    data = load_files(paths, overrides=overrides)
    return sample(data, n=n, seed=seed) if n else data, {p.stem: pair_for(p, overrides) for p in paths}


def split_masks(data: PairData, *, seed: int, fractions: tuple[float, float] = (0.7, 0.15)) -> dict[str, np.ndarray]:
    """Deterministic train/validation/test masks by prompt id (never by row)."""
    keys = data.frame["source"] + "\0" + data.frame["prompt_id"]
    u = np.array([_unit(f"{seed}\0{k}") for k in keys])
    train_end, val_end = fractions[0], fractions[0] + fractions[1]
    return {"train": u < train_end, "validation": (u >= train_end) & (u < val_end), "test": u >= val_end}


def sample(data: PairData, *, n: int, seed: int) -> PairData:
    if n >= len(data):
        return data
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(data), dtype=bool)
    keep[rng.choice(len(data), size=n, replace=False)] = True
    return data.subset(keep)


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2.0**64
