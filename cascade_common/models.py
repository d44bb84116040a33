"""Where the shipped models are: package data of ``classifier`` (``classifier/models``), found by path
so that naming them does not import onnxruntime."""

from __future__ import annotations

from pathlib import Path

_MODELS = Path(__file__).resolve().parents[1] / "classifier" / "models"

# The shipped router (router.onnx + model_card.json), router.model's default.
DEFAULT_ROUTER_MODEL = _MODELS / "default"
# The shipped answer scorer (scorer.onnx + model_card.json), used by escalation.confidence: scorer.
DEFAULT_CONFIDENCE_MODEL = _MODELS / "confidence"
