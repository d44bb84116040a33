"""The learned answer scorer: numpy features of every signal -> one onnxruntime session -> P(acceptable)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cascade_common.errors import ModelError
from classifier.confidence.base import Evidence
from classifier.confidence.features import FEATURE_NAMES, features
from classifier.model import session_options

ONNX_FILE = "scorer.onnx"
CARD_FILE = "model_card.json"
SCHEMA_VERSION = "scorer-1"
FEATURES_INPUT = "features"
PROBA_OUTPUT = "probabilities"
REQUIRED_METADATA = ("schema_version", "version", "feature_names")


class ScorerConfidence:
    """A loaded scorer model; ``confidence`` batches every evidence into one session run."""

    name = "scorer"

    def __init__(self, *, session: ort.InferenceSession, card: dict[str, Any], path: Path) -> None:
        self._session = session
        self.card = card
        self.path = path
        self.version: str = str(card["version"])

    def confidence(self, evidence: Sequence[Evidence]) -> np.ndarray:
        if len(evidence) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.score_features(features(evidence))

    def score_features(self, x: np.ndarray) -> np.ndarray:
        """Confidences for precomputed feature rows (``features.features``'s layout); for evaluation."""
        (proba,) = self._session.run([PROBA_OUTPUT], {FEATURES_INPUT: np.asarray(x, dtype=np.float32)})
        return np.clip(np.asarray(proba, dtype=np.float64)[:, 1], 0.0, 1.0)

    def __repr__(self) -> str:
        return f"ScorerConfidence(version={self.version!r}, path={str(self.path)!r})"


def load_scorer(path: str | Path) -> ScorerConfidence:
    """Load a scorer DIR (``scorer.onnx`` + ``model_card.json``).

    Raises :class:`ModelError` for a missing, corrupt or mismatched model; nothing loads half.
    """
    onnx_path, card_path = Path(path) / ONNX_FILE, Path(path) / CARD_FILE
    if not onnx_path.is_file() or not card_path.is_file():
        raise ModelError(f"confidence model dir {path} needs {ONNX_FILE} and {CARD_FILE}")
    try:
        session = ort.InferenceSession(
            str(onnx_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise ModelError(f"confidence model {onnx_path} is not a loadable ONNX model: {exc}") from exc
    card = _read_metadata(session, onnx_path)
    _check_io(session, onnx_path)
    # The card on disk has what the metadata leaves out (data, split, metrics); the metadata wins.
    card = {**_check_card(card_path, card), **card}
    return ScorerConfidence(session=session, card=card, path=Path(path))


def _read_metadata(session: ort.InferenceSession, onnx_path: Path) -> dict[str, Any]:
    props = session.get_modelmeta().custom_metadata_map
    missing = [key for key in REQUIRED_METADATA if key not in props]
    if missing:
        raise ModelError(f"confidence model {onnx_path} lacks metadata {missing}; not a cascade scorer")
    try:
        card = {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as exc:
        raise ModelError(f"confidence model {onnx_path} has unreadable metadata: {exc}") from exc
    if card["schema_version"] != SCHEMA_VERSION:
        raise ModelError(
            f"confidence model {onnx_path} has schema {card['schema_version']!r}; this code reads {SCHEMA_VERSION!r}"
        )
    if tuple(card["feature_names"]) != FEATURE_NAMES:
        raise ModelError(f"confidence model {onnx_path} was trained on other features than this code computes")
    return card


def _check_io(session: ort.InferenceSession, onnx_path: Path) -> None:
    inputs = session.get_inputs()
    outputs = {o.name for o in session.get_outputs()}
    if (
        [i.name for i in inputs] != [FEATURES_INPUT]
        or inputs[0].shape[-1] != len(FEATURE_NAMES)
        or PROBA_OUTPUT not in outputs
    ):
        raise ModelError(
            f"confidence model {onnx_path} has inputs {[(i.name, i.shape) for i in inputs]} and outputs "
            f"{sorted(outputs)}; expected {FEATURES_INPUT!r} of width {len(FEATURE_NAMES)} and {PROBA_OUTPUT!r}"
        )


def _check_card(card_path: Path, card: dict[str, Any]) -> dict[str, Any]:
    try:
        on_disk = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {card_path} is unreadable: {exc}") from exc
    if on_disk.get("version") != card["version"]:
        raise ModelError(
            f"model card {card_path} is for version {on_disk.get('version')!r}, the ONNX file for {card['version']!r}"
        )
    return dict(on_disk)
