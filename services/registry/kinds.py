"""The two kinds of published model, router and answer scorer: their files, loader and check."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.errors import ModelError

# classifier.confidence.scorer.ONNX_FILE, spelled here because that module imports onnxruntime (a test checks).
SCORER_ONNX_FILE = "scorer.onnx"


def _load_router(path: Path) -> Any:
    from classifier import load_model  # onnxruntime only when a model is loaded

    model = load_model(path)
    _check_unit(model.score(["What is 2 + 2?"])[0], what=f"router model {model.version}")
    return model


def _load_scorer(path: Path) -> Any:
    from classifier.confidence import Evidence
    from classifier.confidence.scorer import load_scorer

    model = load_scorer(path)
    probe = Evidence(prompt="What is 2 + 2?", answer="The answer is 4.", others=("4",), router_score=0.5)
    _check_unit(model.confidence([probe])[0], what=f"scorer model {model.version}")
    return model


def _check_unit(value: Any, *, what: str) -> None:
    """A model that loads but scores outside [0, 1] (or NaN) is refused like one that does not load."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{what} gave a non-numeric score {value!r} on a probe") from None
    if not (math.isfinite(x) and 0.0 <= x <= 1.0):
        raise ModelError(f"{what} scored a probe {x!r}, outside [0, 1]")


@dataclass(frozen=True, kw_only=True)
class Kind:
    name: str
    onnx_file: str
    # Loads a model folder, scores a probe and raises ModelError unless it is fit to serve.
    load: Callable[[Path], Any]

    @property
    def files(self) -> tuple[str, str]:
        return (self.onnx_file, CARD_FILE)


KINDS: dict[str, Kind] = {
    "router": Kind(name="router", onnx_file=ONNX_FILE, load=_load_router),
    "scorer": Kind(name="scorer", onnx_file=SCORER_ONNX_FILE, load=_load_scorer),
}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ModelError(f"unknown model kind {name!r}; known: {sorted(KINDS)}") from None


def detect_kind(model_dir: Path) -> Kind:
    """The kind of a local model folder, from the ONNX file it holds."""
    found = [k for k in KINDS.values() if (Path(model_dir) / k.onnx_file).is_file()]
    if len(found) != 1:
        names = " or ".join(k.onnx_file for k in KINDS.values())
        raise ModelError(f"{model_dir} is not a model folder: it needs one of {names} beside {CARD_FILE}")
    return found[0]
