"""The shipped answer scorer: features, loading (and refusing bad files), golden confidences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from classifier.confidence import Evidence, load_confidence
from classifier.confidence.features import FEATURE_NAMES, GROUPS, features
from classifier.confidence.scorer import CARD_FILE, ONNX_FILE, load_scorer
from services.core.errors import ConfigError, ModelError
from services.core.settings import DEFAULT_CONFIDENCE_MODEL

PROMPT = "Which planet is largest?\nOptions: ['Mars', 'Jupiter', 'Venus', 'Earth']"
RIGHT = "Jupiter is the largest planet in the solar system. The answer is (B)."


def _cols(group: str) -> list[int]:
    return [FEATURE_NAMES.index(n) for n in GROUPS[group]]


def test_absent_signals_give_all_zero_groups() -> None:
    (row,) = features([Evidence(prompt=PROMPT, answer=RIGHT)])
    for group in ("agreement", "logprob", "router"):
        assert not row[_cols(group)].any(), group


def test_present_signals_set_their_indicators() -> None:
    e = Evidence(prompt=PROMPT, answer=RIGHT, others=["(B)"], logprobs=[-0.1, -0.2], router_score=0.3)
    (row,) = features([e])
    for name in ("has_others", "agree_share", "has_logprobs", "has_router"):
        assert row[FEATURE_NAMES.index(name)] == 1.0, name
    assert row[FEATURE_NAMES.index("router_score")] == pytest.approx(0.3)


def test_default_scorer_loads_by_name() -> None:
    model = load_confidence("scorer", None)
    card = json.loads((DEFAULT_CONFIDENCE_MODEL / CARD_FILE).read_text())
    assert model.name == "scorer"
    assert model.version == card["version"]


def test_unknown_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_confidence("no-such-model", None)


def test_confidence_rises_with_agreement() -> None:
    model = load_confidence("scorer", None)
    others = ["The answer is (B).", "The answer is (B).", "The answer is (C).", "The answer is (D)."]
    batch = [Evidence(prompt=PROMPT, answer=RIGHT, others=others[: 4 - i] + ["(B)"] * i) for i in range(5)]
    conf = model.confidence(batch)
    assert conf.dtype == np.float64
    assert np.all(np.diff(conf) >= 0) and conf[-1] > conf[0]


def test_confidence_rises_with_token_probability() -> None:
    model = load_confidence("scorer", None)
    batch = [Evidence(prompt=PROMPT, answer=RIGHT, logprobs=[lp] * 20) for lp in (-3.0, -1.0, -0.3, -0.01)]
    assert np.all(np.diff(model.confidence(batch)) > 0)


def test_a_harder_prompt_by_the_router_never_raises_confidence() -> None:
    model = load_confidence("scorer", None)
    conf = model.confidence([Evidence(prompt=PROMPT, answer=RIGHT, router_score=s) for s in (0.1, 0.9)])
    assert conf[1] <= conf[0]


def test_empty_batch() -> None:
    assert load_confidence("scorer", None).confidence([]).shape == (0,)


# Fixed inputs and the committed model's confidences: a changed feature or model cannot pass unnoticed.
GOLDEN = [
    (Evidence(prompt=PROMPT, answer=RIGHT), 0.473342),
    (Evidence(prompt=PROMPT, answer=RIGHT, others=["B", "The answer is (B)"]), 0.744503),
    (Evidence(prompt=PROMPT, answer="Mars, maybe? I am not sure. The answer is (A)", others=["(B)"]), 0.220785),
    (Evidence(prompt="What is 6*7?", answer="6*7 = 42\n#### 42", others=[r"\boxed{42}"], router_score=0.2), 0.699241),
    (Evidence(prompt="Capital of France?", answer="Paris", others=["It is Paris."], logprobs=[-0.05, -0.2]), 0.823092),
    (Evidence(prompt="Capital?", answer="I'm sorry, I cannot answer that and and and and", router_score=0.9), 0.210574),
]


def test_golden_confidences() -> None:
    conf = load_confidence("scorer", None).confidence([e for e, _ in GOLDEN])
    np.testing.assert_allclose(conf, [p for _, p in GOLDEN], atol=1e-5)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(DEFAULT_CONFIDENCE_MODEL, out)
    return out


def test_missing_dir_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_confidence("scorer", tmp_path / "absent")


def test_corrupt_onnx_is_a_model_error(model_copy: Path) -> None:
    (model_copy / ONNX_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="not a loadable"):
        load_scorer(model_copy)


def test_card_of_another_version_is_a_model_error(model_copy: Path) -> None:
    card = json.loads((model_copy / CARD_FILE).read_text())
    (model_copy / CARD_FILE).write_text(json.dumps({**card, "version": "other"}))
    with pytest.raises(ModelError, match="version"):
        load_scorer(model_copy)


def _set_meta(path: Path, key: str, value: object) -> None:
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = json.dumps(value)
    onnx.save(model, str(path))


def test_other_feature_names_are_a_model_error(model_copy: Path) -> None:
    _set_meta(model_copy / ONNX_FILE, "feature_names", list(FEATURE_NAMES[::-1]))
    with pytest.raises(ModelError, match="other features"):
        load_scorer(model_copy)


def test_other_schema_is_a_model_error(model_copy: Path) -> None:
    _set_meta(model_copy / ONNX_FILE, "schema_version", "scorer-0")
    with pytest.raises(ModelError, match="schema"):
        load_scorer(model_copy)


def test_a_router_model_is_not_a_scorer(model_copy: Path) -> None:
    router = Path(DEFAULT_CONFIDENCE_MODEL).parent / "default" / "router.onnx"
    shutil.copy(router, model_copy / ONNX_FILE)
    with pytest.raises(ModelError):
        load_scorer(model_copy)
