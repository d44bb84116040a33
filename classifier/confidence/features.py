"""Numpy features of one answer for the learned confidence scorer (no scikit-learn).

Four signal groups, each with an availability indicator so that an absent signal contributes a
learned constant instead of garbage: ``agreement`` (with the other answers), ``text`` (the answer
text and the prompt), ``logprob`` (token log-probabilities) and ``router`` (the router's score).
Training calls these very functions, so what the model saw in training is what it sees in service.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from classifier.answers import final_answer, keyword_matches, same_answer
from classifier.confidence.base import Evidence
from classifier.features import HAND_FEATURE_NAMES, hand_features

AGREEMENT_NAMES = ("has_others", "agree_share", "log_agree", "log_disagree", "rival_share")
ANSWER_NAMES = (
    "in_format",
    "flip_flop",
    "log_answer_chars",
    "log_answer_words",
    "hedges",
    "repetition",
    "truncated",
    "refusal",
    "length_ratio",
)
LOGPROB_NAMES = ("has_logprobs", "lp_mean", "lp_q10", "lp_min")
ROUTER_NAMES = ("has_router", "router_score")
PROMPT_NAMES = tuple(f"prompt_{n}" for n in HAND_FEATURE_NAMES)

# The answer's form (did it commit, hedge, loop, stop, refuse) and its length, kept apart because
# length is a difficulty proxy that lowers escalation APGR (README "Answer confidence").
FORM_NAMES = ("in_format", "flip_flop", "hedges", "repetition", "truncated", "refusal")
LENGTH_NAMES = tuple(n for n in ANSWER_NAMES if n not in FORM_NAMES)
GROUPS: dict[str, tuple[str, ...]] = {
    "agreement": AGREEMENT_NAMES,
    "form": FORM_NAMES,
    "length": LENGTH_NAMES,
    "prompt": PROMPT_NAMES,
    "logprob": LOGPROB_NAMES,
    "router": ROUTER_NAMES,
}
FEATURE_NAMES: tuple[str, ...] = AGREEMENT_NAMES + ANSWER_NAMES + PROMPT_NAMES + LOGPROB_NAMES + ROUTER_NAMES

# Logprob features are centred here, so that "present and typical" adds about nothing to the
# logit and "absent" adds exactly nothing (nats per token; typical of a confident 7B answer).
LP_CENTRE = {"lp_mean": -0.3, "lp_q10": -1.5, "lp_min": -4.0}

_WORD = re.compile(r"[a-z0-9']+")
_CONCLUSION = re.compile(r"answer is:?\s*\(?([A-J])\b", re.IGNORECASE)
# A prompt with lettered options (lines "A." / "(A)", inline "(A) ... (B)", MMLU-Pro's "Options: [...]").
_LETTER_OPTIONS = re.compile(r"(?m)^\s*\(?[A-J][.):]\s|\bOptions:\s*\[|\(A\)[^\n]*\(B\)")
# Phrases counted on the space-joined words (str.count, not a regex alternation: this is the
# request path, and a 2,000-token answer scans in microseconds this way).
_HEDGES = (
    "maybe",
    "perhaps",
    "possibly",
    "might",
    "unsure",
    "uncertain",
    "likely",
    "unclear",
    "approximately",
    "guess",
    "assume",
    "however",
    "alternatively",
    "could be",
    "not sure",
    "i think",
    "i believe",
    "it seems",
    "on the other hand",
)
_REFUSALS = (
    "i cannot",
    "i can't",
    "i'm sorry",
    "i am sorry",
    "none of the above",
    "none of the options",
    "none of the choices",
    "not enough information",
    "not sufficient information",
    "cannot be determined",
    "no correct answer",
    "not listed",
)
# Repetition looks at the tail, where a degenerate loop ends a truncated answer.
_REPEAT_TAIL = 512
_END = re.compile(r"[.!?)\]}*\"'`$]\s*$")


def agreement_row(key: str, other_keys: Sequence[str]) -> list[float]:
    """Agreement of an answer's final-answer key with the others' keys (all zero without others)."""
    n = len(other_keys)
    if n == 0:
        return [0.0] * len(AGREEMENT_NAMES)
    agree = sum(same_answer(key, k) for k in other_keys)
    rivals = Counter(k for k in other_keys if not same_answer(key, k))
    rival = max(rivals.values()) if rivals else 0
    return [1.0, agree / n, math.log1p(agree), math.log1p(n - agree), rival / n]


def in_format(prompt: str, key: str) -> float:
    """1 when the answer has a final answer of the kind the prompt asks for: an option letter when the
    prompt lists lettered options, anything non-empty otherwise (so math and free-text QA answers
    are all in format and this feature cannot reorder them)."""
    if _LETTER_OPTIONS.search(prompt):
        return float(key.startswith("option:"))
    return float(key != "text:")


def answer_row(prompt: str, answer: str, key: str) -> list[float]:
    """Hand-made signals of the answer text: the format of its final answer, length, hedging, loops, ..."""
    words = _WORD.findall(answer.lower())
    joined = f" {' '.join(words)} "
    return [
        in_format(prompt, key),
        float(len({m.group(1).upper() for m in keyword_matches(_CONCLUSION, answer, ("answer is",))}) > 1),
        math.log1p(len(answer)),
        math.log1p(len(words)),
        math.log1p(sum(joined.count(f" {h} ") for h in _HEDGES)),
        _repetition(words[-_REPEAT_TAIL:]),
        float(not _END.search(answer)),
        float(any(f" {r} " in joined for r in _REFUSALS)),
        math.log1p(len(answer)) - math.log1p(len(prompt)),
    ]


def _repetition(words: list[str]) -> float:
    """Share of word 4-grams that repeat an earlier one: degenerate loops score near 1."""
    grams = list(zip(words, words[1:], words[2:], words[3:], strict=False))
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def logprob_row(logprobs: Sequence[float]) -> list[float]:
    """Length-normalised token log-probability signals (Gupta et al. 2024), centred; zero when absent."""
    if len(logprobs) == 0:
        return [0.0] * len(LOGPROB_NAMES)
    lp = np.asarray(logprobs, dtype=np.float64)
    lp = lp[np.isfinite(lp)] if np.isfinite(lp).any() else np.full(1, -20.0)
    values = {"lp_mean": lp.mean(), "lp_q10": np.quantile(lp, 0.1), "lp_min": lp.min()}
    return [1.0] + [float(values[n] - LP_CENTRE[n]) for n in LOGPROB_NAMES[1:]]


def router_row(score: float | None) -> list[float]:
    return [0.0, 0.0] if score is None or not math.isfinite(score) else [1.0, float(score)]


def features(evidence: Sequence[Evidence]) -> np.ndarray:
    """One row of ``len(FEATURE_NAMES)`` float32 features per evidence."""
    prompts = hand_features([e.prompt for e in evidence])
    rows = []
    for i, e in enumerate(evidence):
        key = final_answer(e.answer)
        rows.append(
            agreement_row(key, [final_answer(o) for o in e.others])
            + answer_row(e.prompt, e.answer, key)
            + prompts[i].tolist()
            + logprob_row(e.logprobs)
            + router_row(e.router_score)
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(evidence), len(FEATURE_NAMES))
