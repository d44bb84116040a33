"""The interface every answer-confidence model implements, and what it is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """Everything known about one answer when its confidence is asked for.

    Optional signals are empty or None when absent; a model uses what is there.
    """

    prompt: str
    answer: str
    # Token log-probabilities of ``answer``; empty when the tier reported none (replay tiers).
    logprobs: Sequence[float] = ()
    # Other answers to the same prompt: self-consistency samples and second opinions.
    others: Sequence[str] = ()
    # The router's difficulty score for the prompt, when the router was asked.
    router_score: float | None = None


class ConfidenceModel(Protocol):
    """Scores answers: the probability, in [0, 1], that each answer is acceptable."""

    name: str  # the registry name ("scorer", "logprob", ...)
    version: str  # recorded in every decision and outcome

    def confidence(self, evidence: Sequence[Evidence]) -> np.ndarray:
        """One float64 in [0, 1] per evidence, in order (one batch, one model run)."""
        ...
