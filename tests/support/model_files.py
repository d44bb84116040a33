"""Model folders for registry tests: the shipped router and scorer under other versions, or made worse."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import numpy_helper

from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.settings import DEFAULT_CONFIDENCE_MODEL, DEFAULT_ROUTER_MODEL
from training.export import set_metadata

SCORER_ONNX = "scorer.onnx"
ROUTER_VERSION = json.loads((DEFAULT_ROUTER_MODEL / CARD_FILE).read_text())["version"]
SCORER_VERSION = json.loads((DEFAULT_CONFIDENCE_MODEL / CARD_FILE).read_text())["version"]


def router_variant(tmp_path: Path, version: str, *, invert: bool = False, schema: str | None = None) -> Path:
    """The default router under another version; ``invert``: scores flipped (a worse router)."""
    model = onnx.load(str(DEFAULT_ROUTER_MODEL / ONNX_FILE))
    card = json.loads((DEFAULT_ROUTER_MODEL / CARD_FILE).read_text())
    card["version"] = version
    if schema is not None:
        card["schema_version"] = schema
    if invert:  # sigmoid(-z) = 1 - sigmoid(z): the ranking of every prompt is reversed
        for init in model.graph.initializer:
            if init.name in ("w0", "b0"):
                init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    set_metadata(model, card)
    return _write(tmp_path / version, model, ONNX_FILE, card)


def scorer_variant(tmp_path: Path, version: str, *, invert: bool = False) -> Path:
    """The shipped scorer under another version; ``invert``: the linear model's sign flipped (a worse scorer)."""
    model = onnx.load(str(DEFAULT_CONFIDENCE_MODEL / SCORER_ONNX))
    card = json.loads((DEFAULT_CONFIDENCE_MODEL / CARD_FILE).read_text()) | {"version": version}
    meta = {p.key: json.loads(p.value) for p in model.metadata_props} | {"version": version}
    if invert:
        for node in model.graph.node:
            for attr in node.attribute if node.op_type == "LinearClassifier" else ():
                if attr.name in ("coefficients", "intercepts"):
                    attr.floats[:] = [-x for x in attr.floats]
    set_metadata(model, meta)
    return _write(tmp_path / version, model, SCORER_ONNX, card)


def _write(out: Path, model: onnx.ModelProto, onnx_file: str, card: dict) -> Path:
    out.mkdir(parents=True)
    onnx.save(model, str(out / onnx_file))
    (out / CARD_FILE).write_text(json.dumps(card))
    return out
