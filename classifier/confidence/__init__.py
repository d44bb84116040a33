"""Answer confidence: the probability that a tier's answer is acceptable, from every signal at hand.

One small interface (:class:`ConfidenceModel`) with a registry by name, like tier backends, chosen
from configuration (``escalation.confidence``). Inference only: numpy and onnxruntime, never
scikit-learn.
"""

from classifier.confidence.base import ConfidenceModel, Evidence
from classifier.confidence.registry import CONFIDENCE_MODELS, load_confidence, register

__all__ = ["CONFIDENCE_MODELS", "ConfidenceModel", "Evidence", "load_confidence", "register"]
