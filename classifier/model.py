"""Load a router model and score prompts with one onnxruntime session."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cascade_common.errors import ModelError
from classifier.contract import (
    CARD_FILE,
    FEATURES_INPUT,
    ONNX_FILE,
    REQUIRED_METADATA,
    SCHEMA_VERSION,
    SCORE_OUTPUT,
    TEXT_INPUT,
)
from classifier.features import EXTRA_DIMS, EXTRACTORS, TEXT_NORMALISERS
from classifier.thresholds import pick_threshold


def session_options() -> ort.SessionOptions:
    """Options for single-request latency (see bench/classifier.py for the measurements)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A spinning worker thread burns a core between requests for no gain at one thread.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class RouterModel:
    """A loaded router model: prompt texts in, difficulty scores in ``[0, 1]`` out.

    A higher score means the large tier is more likely to gain over the small one;
    route to the large tier when ``score >= threshold``.
    """

    def __init__(self, *, session: ort.InferenceSession, card: dict[str, Any], path: Path) -> None:
        self._session = session
        self.card = card
        self.path = path
        self.version: str = str(card["version"])
        small, large = card["pair"]
        self.pair: tuple[str, str] = (str(small), str(large))
        self.default_threshold = float(card["default_threshold"])
        self._extra: Callable[[Sequence[str]], np.ndarray] | None = (
            EXTRACTORS[card["extra_features"]] if card["extra_features"] else None
        )
        self._text_input = TEXT_INPUT in {i.name for i in session.get_inputs()}
        normalisation = card.get("text_normalisation")
        self._normalise: Callable[[str], str] | None = TEXT_NORMALISERS[normalisation] if normalisation else None
        self._table: list[dict[str, Any]] = list(card["threshold_table"])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores for ``texts`` (float32, one per text), computed in one ``session.run``."""
        if isinstance(texts, str):
            raise TypeError("score() takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float32)
        feeds: dict[str, np.ndarray] = {}
        if self._text_input:
            graph_texts = [self._normalise(t) for t in texts] if self._normalise else texts
            feeds[TEXT_INPUT] = np.asarray(graph_texts, dtype=object).reshape(-1, 1)
        if self._extra is not None:
            feeds[FEATURES_INPUT] = self._extra(texts)
        (scores,) = self._session.run([SCORE_OUTPUT], feeds)
        return np.clip(np.asarray(scores, dtype=np.float32).reshape(-1), 0.0, 1.0)

    def threshold_for(self, *, large_share: float | None = None, quality: float | None = None) -> float:
        """The threshold that sends ``large_share`` of prompts to the large tier, or the lowest
        large share that keeps ``quality`` (a fraction of the large tier's quality), as measured
        on the calibration prompts when the model was built or re-calibrated."""
        return pick_threshold(self._table, large_share=large_share, quality=quality)

    def __repr__(self) -> str:
        return f"RouterModel(version={self.version!r}, pair={self.pair!r}, path={str(self.path)!r})"


def load_model(path: str | Path) -> RouterModel:
    """Load a model DIR (``router.onnx`` + ``model_card.json``) or an ``.onnx`` file.

    Raises :class:`ModelError` for a missing, corrupt or mismatched file; nothing is
    returned half-loaded, so a caller that keeps its old model on error keeps serving.
    """
    onnx_path, card_path = _resolve(Path(path))
    try:
        session = ort.InferenceSession(
            str(onnx_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        raise ModelError(f"router model {onnx_path} is not a loadable ONNX model: {exc}") from exc
    card = _read_metadata(session, onnx_path)
    _check_io(session, card, onnx_path)
    if card_path is not None:
        _check_card(card_path, card)
    return RouterModel(session=session, card=card, path=onnx_path)


def _resolve(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        onnx_path, card_path = path / ONNX_FILE, path / CARD_FILE
        if not card_path.is_file():
            raise ModelError(f"router model dir {path} has no {CARD_FILE}")
    else:
        onnx_path, card_path = path, None
    if not onnx_path.is_file():
        raise ModelError(f"router model file {onnx_path} does not exist")
    return onnx_path, card_path


def _read_metadata(session: ort.InferenceSession, onnx_path: Path) -> dict[str, Any]:
    props = session.get_modelmeta().custom_metadata_map
    missing = [key for key in REQUIRED_METADATA if key not in props]
    if missing:
        raise ModelError(f"router model {onnx_path} lacks metadata {missing}; not a cascade router model")
    try:
        card = {key: json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as exc:
        raise ModelError(f"router model {onnx_path} has unreadable metadata: {exc}") from exc
    if card["schema_version"] != SCHEMA_VERSION:
        raise ModelError(
            f"router model {onnx_path} has schema version {card['schema_version']!r}; "
            f"this code reads {SCHEMA_VERSION!r}"
        )
    normalisation = card.get("text_normalisation")
    if normalisation and normalisation not in TEXT_NORMALISERS:
        raise ModelError(f"router model {onnx_path} needs text normalisation {normalisation!r}, unknown to this code")
    if not card["threshold_table"] or len(card["pair"]) != 2:
        raise ModelError(f"router model {onnx_path} has an empty threshold table or a bad pair")
    return card


def _check_io(session: ort.InferenceSession, card: dict[str, Any], onnx_path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    extra = card["extra_features"]
    expected = set(card["inputs"])
    allowed = {TEXT_INPUT} | ({FEATURES_INPUT} if extra else set())
    if set(inputs) != expected or not expected <= allowed or outputs != [SCORE_OUTPUT]:
        raise ModelError(
            f"router model {onnx_path} has inputs {sorted(inputs)} and outputs {outputs}; "
            f"expected inputs {sorted(expected)} and outputs [{SCORE_OUTPUT!r}]"
        )
    if extra and (extra not in EXTRACTORS or inputs[FEATURES_INPUT].shape[-1] != EXTRA_DIMS[extra]):
        raise ModelError(
            f"router model {onnx_path} expects extra features {extra!r} of shape "
            f"{inputs[FEATURES_INPUT].shape}, which this code cannot compute"
        )


def _check_card(card_path: Path, card: dict[str, Any]) -> None:
    try:
        on_disk = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {card_path} is unreadable: {exc}") from exc
    if on_disk.get("version") != card["version"]:
        raise ModelError(
            f"model card {card_path} is for version {on_disk.get('version')!r} but "
            f"the ONNX file is version {card['version']!r}"
        )
