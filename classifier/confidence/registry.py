"""Confidence models by name, chosen from configuration (``escalation.confidence``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cascade_common.errors import ConfigError
from classifier.confidence.base import ConfidenceModel, Evidence

# name -> factory(model path or None for the shipped default) -> model
CONFIDENCE_MODELS: dict[str, Callable[[Path | None], ConfidenceModel]] = {}


def register(
    name: str,
) -> Callable[[Callable[[Path | None], ConfidenceModel]], Callable[[Path | None], ConfidenceModel]]:
    def add(factory: Callable[[Path | None], ConfidenceModel]) -> Callable[[Path | None], ConfidenceModel]:
        CONFIDENCE_MODELS[name] = factory
        return factory

    return add


def load_confidence(name: str, model: Path | None = None) -> ConfidenceModel:
    """The confidence model registered as ``name``, loaded from ``model`` (None: its default).

    Raises ConfigError for an unknown name and ModelError for a model file that cannot be used.
    """
    try:
        factory = CONFIDENCE_MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown confidence model {name!r}; known: {sorted(CONFIDENCE_MODELS)}") from None
    return factory(model)


class LogprobConfidence:
    """Geometric-mean token probability of the answer; 0.5 (no information) without logprobs."""

    name = "logprob"
    version = "logprob-geomean-1"

    def confidence(self, evidence: Sequence[Evidence]) -> np.ndarray:
        return np.array(
            [math.exp(sum(e.logprobs) / len(e.logprobs)) if e.logprobs else 0.5 for e in evidence], dtype=np.float64
        )


@register("logprob")
def _logprob(model: Path | None) -> ConfidenceModel:
    return LogprobConfidence()


class AgreementConfidence:
    """Share of the other answers whose final answer agrees; 0.5 (no information) without others."""

    name = "agreement"
    version = "agreement-1"

    def confidence(self, evidence: Sequence[Evidence]) -> np.ndarray:
        from classifier.answers import agreement

        return np.array(
            [a if (a := agreement(e.answer, e.others)) is not None else 0.5 for e in evidence], dtype=np.float64
        )


@register("agreement")
def _agreement(model: Path | None) -> ConfidenceModel:
    return AgreementConfidence()


@register("scorer")
def _scorer(model: Path | None) -> ConfidenceModel:
    # Imported here so the light models load without onnxruntime sessions or the shipped file.
    from cascade_common.models import DEFAULT_CONFIDENCE_MODEL
    from classifier.confidence.scorer import load_scorer

    return load_scorer(model if model is not None else DEFAULT_CONFIDENCE_MODEL)
