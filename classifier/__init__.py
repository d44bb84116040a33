"""Inference for the difficulty classifier: text -> features -> one ONNX session -> score.

Nothing here imports scikit-learn; training lives in :mod:`training`.
"""

from classifier.contract import CARD_FILE, ONNX_FILE, SCHEMA_VERSION
from classifier.model import RouterModel, load_model, session_options

__all__ = ["CARD_FILE", "ONNX_FILE", "SCHEMA_VERSION", "RouterModel", "load_model", "session_options"]
