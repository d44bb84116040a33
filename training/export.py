"""Build the router's ONNX graph: vectorizer (skl2onnx) + scaling + a hand-written head."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier.contract import FEATURES_INPUT, SCORE_OUTPUT, TEXT_INPUT
from training.featuresets import TOKEN_PATTERN

OPSET = 17
# StringNormalizer needs a locale that exists on every host; C.UTF-8 ships with glibc itself.
LOCALE = "C.UTF-8"
# What skl2onnx writes for opset 17; onnxruntime >= 1.20 reads it.
IR_VERSION = 8


def _vectorizer_graph(vectorizer: TfidfVectorizer) -> onnx.ModelProto:
    opts: dict[str, Any] = {"locale": LOCALE}
    if vectorizer.analyzer == "word":
        opts["tokenexp"] = TOKEN_PATTERN
    options = {id(vectorizer): opts}
    return convert_sklearn(
        vectorizer,
        initial_types=[(TEXT_INPUT, StringTensorType([None, 1]))],
        options=options,
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )


def _layers(estimator: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    if hasattr(estimator, "coefs_"):
        return list(zip(estimator.coefs_, estimator.intercepts_, strict=True))
    return [(estimator.coef_.T, estimator.intercept_)]


def build_onnx(
    *,
    vectorizer: TfidfVectorizer | None,
    extra_dim: int,
    extra_mean: np.ndarray | None,
    extra_scale: np.ndarray | None,
    estimator: Any,
) -> onnx.ModelProto:
    """The full graph: ``text`` (and ``features``) in, ``score`` = P(label) out."""
    if vectorizer is not None:
        model = _vectorizer_graph(vectorizer)
        graph = model.graph
        parts = [graph.output[0].name]
    else:
        graph = helper.make_graph([], "router", [], [])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
        graph = model.graph
        parts = []
    nodes, inits = [], []
    if extra_dim:
        graph.input.append(helper.make_tensor_value_info(FEATURES_INPUT, TensorProto.FLOAT, [None, extra_dim]))
        name = FEATURES_INPUT
        if extra_mean is not None and extra_scale is not None:
            inits += [_const("extra_mean", extra_mean), _const("extra_scale", extra_scale)]
            nodes += [
                helper.make_node("Sub", [name, "extra_mean"], ["extra_centred"]),
                helper.make_node("Div", ["extra_centred", "extra_scale"], ["extra_scaled"]),
            ]
            name = "extra_scaled"
        parts.append(name)
    x = parts[0]
    if len(parts) > 1:
        nodes.append(helper.make_node("Concat", parts, ["head_input"], axis=1))
        x = "head_input"
    layers = _layers(estimator)
    for i, (w, b) in enumerate(layers):
        inits += [_const(f"w{i}", w), _const(f"b{i}", b)]
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"]),
        ]
        x = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"h{i}"]))
            x = f"h{i}"
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
    nodes += [
        helper.make_node("Sigmoid", [x], ["prob"]),
        helper.make_node("Reshape", ["prob", "flat_shape"], [SCORE_OUTPUT]),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, [None]))
    onnx.checker.check_model(model)
    return model


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def set_metadata(model: onnx.ModelProto, card: dict[str, Any]) -> None:
    """Store every card field as JSON in the model's metadata_props (replacing old ones)."""
    del model.metadata_props[:]
    for key, value in card.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
    model.producer_name = "prompt-cascade training"
    model.doc_string = f"prompt-cascade router model {card.get('version', '')}"
