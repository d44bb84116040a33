"""Threshold routing over a hot-swappable classifier model."""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.core.calibration import CalibrationFile
from services.core.errors import ModelError
from services.core.settings import RouterSettings

if TYPE_CHECKING:
    from classifier import RouterModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    tier: str
    score: float
    threshold: float  # the top cut: at or above it, the top (large) tier
    thresholds: tuple[float, ...]  # every cut, one per tier above the first
    model_version: str
    latency_ms: float


class ModelHolder:
    """Holds the model in service; a new model replaces it only if it loads and validates.

    Built with a path, it loads it at once; built without one (a published model, fetched
    once the service has NATS), ``load`` must be called before ``model`` is read.
    """

    def __init__(self, path: Path | None = None) -> None:
        from classifier import load_model  # onnxruntime is imported once, here, at start-up

        self._load = load_model
        self._path: Path | None = None
        self._stamp = (0.0, 0)
        self._model: RouterModel | None = None
        if path is not None:
            self.load(path)

    @property
    def model(self) -> RouterModel:
        if self._model is None:
            raise ModelError("no router model loaded yet")
        return self._model

    def load(self, path: Path) -> RouterModel:
        """Load ``path`` and serve it; raises ModelError (no fallback at start: a bad model must not serve)."""
        model = self._load(path)
        self._path, self._stamp, self._model = path, self._file_stamp(path), model
        return model

    @staticmethod
    def _file_stamp(path: Path) -> tuple[float, int]:
        onnx = path / "router.onnx" if path.is_dir() else path
        try:
            st = onnx.stat()
        except OSError:
            return (0.0, 0)
        return (st.st_mtime, st.st_size)

    def reload_if_changed(self) -> bool:
        """Swap in a changed model file; keep the old model (and say why) when it is bad."""
        if self._path is None:
            return False
        stamp = self._file_stamp(self._path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self._replace(self._path)

    def install(self, model: RouterModel, path: Path) -> None:
        """Serve an already loaded and checked model (a published version); one assignment, atomic."""
        self._path, self._stamp, self._model = path, self._file_stamp(path), model

    def switch_to(self, path: Path) -> bool:
        """Serve the model at another path (a newly published version), unless it is bad."""
        if not self._replace(path):
            return False
        self._path, self._stamp = path, self._file_stamp(path)
        return True

    def _replace(self, path: Path) -> bool:
        try:
            model = self._load(path)
        except ModelError as exc:
            log.error("refused new router model at %s, still serving %s: %s", path, self.model.version, exc)
            return False
        log.info("router model %s replaced by %s", self.model.version, model.version)
        self._model = model
        return True


class ThresholdPolicy:
    """Score bands over the ordered tiers: the starting tier is the one whose band holds the score.

    With tiers t0 < t1 < ... < tN-1 and cuts c1 <= ... <= cN-1, a score at or above c_i starts on
    t_i or above; two tiers: the large tier when the score reaches the threshold, else the small one.
    The cuts: a calibrated policy file's when one is given (it wins), else router.thresholds, else
    the one threshold (configured, else the model's for a target large share, else its default) at
    every cut, so a prompt starts on the cheapest tier or goes straight to the top.
    """

    def __init__(
        self, *, holder: ModelHolder, settings: RouterSettings, calibration: CalibrationFile | None = None
    ) -> None:
        self._holder = holder
        self._settings = settings
        self._calibration = calibration

    def threshold(self) -> float:
        """The one threshold (the top cut of a 2-tier list)."""
        if self._calibration is not None:
            return self._calibration.current().router_threshold
        s, model = self._settings, self._holder.model
        if s.threshold is not None:
            return s.threshold
        if s.thresholds:
            return s.thresholds[-1]
        if s.target_large_share is not None:
            return model.threshold_for(large_share=s.target_large_share)
        return model.default_threshold

    def cuts(self) -> tuple[float, ...]:
        n = len(self._settings.tiers)
        if self._calibration is not None:
            return self._calibration.current().router_cuts(n)  # its tier count was checked on load
        if self._settings.thresholds is not None:
            return self._settings.thresholds
        return (self.threshold(),) * (n - 1)

    def decide(self, text: str) -> Decision:
        start = time.perf_counter()
        model = self._holder.model
        score = float(model.score([text])[0])
        cuts = self.cuts()
        tier = self._settings.tiers[bisect.bisect_right(cuts, score)]
        return Decision(
            tier=tier,
            score=score,
            threshold=cuts[-1] if cuts else self.threshold(),
            thresholds=cuts,
            model_version=model.version,
            latency_ms=(time.perf_counter() - start) * 1e3,
        )
