"""Threshold routing over a hot-swappable classifier model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.core.errors import ModelError
from services.core.settings import RouterSettings

if TYPE_CHECKING:
    from classifier import RouterModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    tier: str
    score: float
    threshold: float
    model_version: str
    latency_ms: float


class ModelHolder:
    """Holds the model in service; a new file replaces it only if it loads and validates."""

    def __init__(self, path: Path) -> None:
        from classifier import load_model  # onnxruntime is imported once, here, at start-up

        self._load = load_model
        self._path = path
        self._stamp = self._file_stamp()
        self.model: RouterModel = load_model(path)  # no fallback at start: a bad model must not serve

    def _file_stamp(self) -> tuple[float, int]:
        onnx = self._path / "router.onnx" if self._path.is_dir() else self._path
        try:
            st = onnx.stat()
        except OSError:
            return (0.0, 0)
        return (st.st_mtime, st.st_size)

    def reload_if_changed(self) -> bool:
        """Swap in a changed model file; keep the old model (and say why) when it is bad."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            model = self._load(self._path)
        except ModelError as exc:
            log.error("refused new router model at %s, still serving %s: %s", self._path, self.model.version, exc)
            return False
        log.info("router model %s replaced by %s", self.model.version, model.version)
        self.model = model
        return True


class ThresholdPolicy:
    """Large tier when the difficulty score reaches the threshold, small tier otherwise."""

    def __init__(self, *, holder: ModelHolder, settings: RouterSettings) -> None:
        self._holder = holder
        self._settings = settings

    def threshold(self) -> float:
        s, model = self._settings, self._holder.model
        if s.threshold is not None:
            return s.threshold
        if s.target_large_share is not None:
            return model.threshold_for(large_share=s.target_large_share)
        return model.default_threshold

    def decide(self, text: str) -> Decision:
        start = time.perf_counter()
        model = self._holder.model
        score = float(model.score([text])[0])
        threshold = self.threshold()
        tier = self._settings.large_tier if score >= threshold else self._settings.small_tier
        return Decision(
            tier=tier,
            score=score,
            threshold=threshold,
            model_version=model.version,
            latency_ms=(time.perf_counter() - start) * 1e3,
        )
