"""Features computed in numpy next to the ONNX session (no scikit-learn).

Two extractors live here, chosen by name from a model's ``extra_features`` metadata:
``hand`` (hand-made difficulty signals) and ``hash`` (hashed word uni/bigrams, which
skl2onnx cannot put in a graph). Training calls the very same functions, so what
the model saw in training is what it sees in service.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_OPTION_LINE = re.compile(r"(?m)^\s*(?:\(?[A-J][.):]|[A-J]\s*[-:])\s")
_LIST_OPTION = re.compile(r"',\s*'|\",\s*\"")
_MATH = re.compile(r"[=+\-*/^<>%\\$]|\bsqrt\b|\bfrac\b")
_CODE = re.compile(r"```|\bdef |\breturn\b|\bclass |[{};]|\bimport\b|=>")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# Counting with C-level regex scans, not per-character Python calls: this is the request path.
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")
_PUNCT = re.compile(r"[^\w\s]")

HAND_FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "mean_word_len",
    "long_word_ratio",
    "unique_word_ratio",
    "digit_ratio",
    "upper_ratio",
    "math_ratio",
    "log_numbers",
    "log_questions",
    "log_lines",
    "log_options",
    "log_code_markers",
    "punct_ratio",
)

HASH_DIM = 1 << 14


def _hand_row(text: str) -> list[float]:
    n = max(len(text), 1)
    words = _WORD.findall(text.lower())
    nw = max(len(words), 1)
    lengths = list(map(len, words))
    options = len(_OPTION_LINE.findall(text)) + len(_LIST_OPTION.findall(text))
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        sum(lengths) / nw,
        sum(length >= 8 for length in lengths) / nw,
        len(set(words)) / nw,
        len(_DIGIT.findall(text)) / n,
        len(_UPPER.findall(text)) / n,
        len(_MATH.findall(text)) / n,
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(text.count("?")),
        math.log1p(text.count("\n")),
        math.log1p(options),
        math.log1p(len(_CODE.findall(text))),
        len(_PUNCT.findall(text)) / n,
    ]


def hand_features(texts: Sequence[str]) -> np.ndarray:
    """Hand-made difficulty signals, one row of ``len(HAND_FEATURE_NAMES)`` per text."""
    return np.asarray([_hand_row(t) for t in texts], dtype=np.float32).reshape(len(texts), len(HAND_FEATURE_NAMES))


def hash_indices(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and l2-normalised log counts of hashed word uni- and bigrams."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    if not grams:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.int64, count=len(grams))
    cols, counts = np.unique(idx % HASH_DIM, return_counts=True)
    vals = np.log1p(counts).astype(np.float32)
    return cols, vals / np.float32(np.linalg.norm(vals))


def hash_features(texts: Sequence[str]) -> np.ndarray:
    """Dense hashed word uni/bigram features, shape ``[len(texts), HASH_DIM]``."""
    out = np.zeros((len(texts), HASH_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        cols, vals = hash_indices(text)
        out[row, cols] = vals
    return out


EXTRACTORS: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
    "hand": hand_features,
    "hash": hash_features,
}

EXTRA_DIMS: dict[str, int] = {"hand": len(HAND_FEATURE_NAMES), "hash": HASH_DIM}


def ascii_words(text: str) -> str:
    """The text's lowercase ``[a-z0-9]+`` words joined by single spaces.

    Word models see their text through this before the ONNX graph (and, in training, before
    scikit-learn): onnxruntime's StringNormalizer and Tokenizer disagree with Python's
    ``str.lower`` and ``re`` on some non-ASCII text ("İ", the Kelvin sign, ligatures), and a
    pure ASCII, pre-split string leaves them nothing to disagree on. Scikit-learn finds the
    same words in it as in the raw text, so the features do not change.
    """
    return " ".join(_WORD.findall(text.lower()))


# By the name a model's ``text_normalisation`` metadata gives; a model without one sees raw text.
TEXT_NORMALISERS: dict[str, Callable[[str], str]] = {"ascii-words": ascii_words}
