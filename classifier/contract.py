"""The contract between a router model file and the code that serves it.

A router model is one ONNX file. Its graph takes the prompt text as a string tensor
``text`` of shape ``[N, 1]`` and, for feature sets that need numbers computed outside
the graph, a float tensor ``features`` of shape ``[N, K]``. It returns one float
tensor ``score`` of shape ``[N]`` in ``[0, 1]``. Everything a router needs to know
about the model (including which of the two inputs it takes) lives in the file's
``metadata_props`` (JSON-encoded values), so the file alone says what it is.
"""

from __future__ import annotations

SCHEMA_VERSION = "1"

TEXT_INPUT = "text"
FEATURES_INPUT = "features"
SCORE_OUTPUT = "score"

ONNX_FILE = "router.onnx"
CARD_FILE = "model_card.json"

# Metadata keys every model must carry (values are JSON documents).
REQUIRED_METADATA = (
    "schema_version",
    "version",
    "pair",
    "label",
    "feature_set",
    "inputs",
    "extra_features",
    "threshold_table",
    "default_threshold",
)
