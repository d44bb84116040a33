"""Final answers extracted from answer texts, and agreement between answers.

Two answers agree when their extracted final answers are equal: an option letter ("The answer is
(C)"), a number (``#### 42``, ``\\boxed{42}``, the last number), otherwise the normalised text.
Plain string work on the request path: no model, no scikit-learn.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_LETTER = re.compile(r"answer is:?\s*\(?([A-J])\b\)?", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def final_answer(text: str) -> str:
    """A comparable key for the answer's final answer ("" when the text is empty)."""
    m = _LETTER.search(text)
    if m:
        return f"option:{m.group(1).upper()}"
    for pattern in (_BOXED, _HASHES):
        found = pattern.findall(text)
        if found:
            return _number_or_text(found[-1])
    numbers = _NUMBER.findall(text)
    if numbers:
        return _number_key(numbers[-1])
    return "text:" + _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def _number_or_text(value: str) -> str:
    numbers = _NUMBER.findall(value)
    return _number_key(numbers[-1]) if numbers else "text:" + _SPACE.sub(" ", value.lower()).strip()


def _number_key(value: str) -> str:
    try:
        return f"number:{float(value.replace(',', '')):g}"
    except ValueError:
        return f"text:{value}"


def agreement(answer: str, others: Sequence[str]) -> float | None:
    """Share of ``others`` whose final answer equals ``answer``'s; None without others."""
    if not others:
        return None
    key = final_answer(answer)
    return sum(final_answer(o) == key for o in others) / len(others)


def majority(answers: Sequence[str]) -> int:
    """Index of the first answer whose final answer is the most common (ties: the earliest)."""
    if not answers:
        raise ValueError("majority() needs at least one answer")
    keys = [final_answer(a) for a in answers]
    counts = Counter(keys)
    best = max(counts.values())
    return next(i for i, k in enumerate(keys) if counts[k] == best)
