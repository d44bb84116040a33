"""The inference package: loading, scoring, thresholds, and refusing bad model files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from classifier import load_model
from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.errors import ModelError

DEFAULT = Path(__file__).resolve().parents[2] / "classifier" / "models" / "default"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEFAULT, tmp_path / "model"))


def _rewrite(model_dir: Path, edit) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load(str(model_dir / ONNX_FILE))
    edit(model)
    onnx.save(model, str(model_dir / ONNX_FILE))


def _set_meta(model: onnx.ModelProto, key: str, value: object) -> None:
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = json.dumps(value)


def test_default_model_loads_and_describes_itself() -> None:
    model = load_model(DEFAULT)
    card = json.loads((DEFAULT / CARD_FILE).read_text())
    assert model.version == card["version"]
    assert model.pair == tuple(card["pair"])
    assert model.card["label"] in {"large-wins", "small-fails"}
    assert model.card["threshold_table"] and "metrics" in model.card
    assert 0.0 <= model.default_threshold <= 1.0 + 1e-5
    assert load_model(DEFAULT / ONNX_FILE).version == model.version


def test_scores_are_batched_consistently_and_in_range() -> None:
    model = load_model(DEFAULT)
    texts = ["What is 2 + 2?", "", "Prove that there are infinitely many primes.\nA. yes\nB. no", "x" * 20000]
    batch = model.score(texts)
    assert batch.dtype == np.float32 and batch.shape == (4,)
    assert np.all((batch >= 0) & (batch <= 1))
    singles = np.concatenate([model.score([t]) for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-6)
    assert model.score([]).shape == (0,)
    with pytest.raises(TypeError):
        model.score("one string")  # type: ignore[arg-type]


def test_threshold_for_targets() -> None:
    model = load_model(DEFAULT)
    low, high = model.threshold_for(large_share=0.1), model.threshold_for(large_share=0.8)
    assert low >= high
    assert model.threshold_for(quality=1.0) <= model.threshold_for(quality=0.8)
    with pytest.raises(ValueError):
        model.threshold_for()
    with pytest.raises(ValueError):
        model.threshold_for(large_share=1.5)


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match=CARD_FILE):
        load_model(tmp_path)


def test_corrupt_file_is_refused(model_dir: Path) -> None:
    data = (model_dir / ONNX_FILE).read_bytes()
    (model_dir / ONNX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        load_model(model_dir)


def test_wrong_output_name_is_refused(model_dir: Path) -> None:
    def rename(model: onnx.ModelProto) -> None:
        model.graph.node.append(onnx.helper.make_node("Identity", ["score"], ["probability"]))
        model.graph.output[0].name = "probability"

    _rewrite(model_dir, rename)
    with pytest.raises(ModelError, match="expected inputs"):
        load_model(model_dir)


def test_missing_metadata_is_refused(model_dir: Path) -> None:
    def drop_table(model: onnx.ModelProto) -> None:
        keep = [e for e in model.metadata_props if e.key != "threshold_table"]
        model.ClearField("metadata_props")
        model.metadata_props.extend(keep)

    _rewrite(model_dir, drop_table)
    with pytest.raises(ModelError, match="threshold_table"):
        load_model(model_dir / ONNX_FILE)
    _rewrite(model_dir, lambda m: m.ClearField("metadata_props"))
    with pytest.raises(ModelError, match="not a cascade router model"):
        load_model(model_dir / ONNX_FILE)


def test_wrong_schema_version_is_refused(model_dir: Path) -> None:
    _rewrite(model_dir, lambda m: _set_meta(m, "schema_version", "999"))
    with pytest.raises(ModelError, match="schema version"):
        load_model(model_dir / ONNX_FILE)


def test_card_from_another_version_is_refused(model_dir: Path) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    (model_dir / CARD_FILE).write_text(json.dumps({**card, "version": "other"}))
    with pytest.raises(ModelError, match="version"):
        load_model(model_dir)


def test_import_does_not_pull_in_sklearn() -> None:
    code = (
        "import sys, classifier; m = classifier.load_model(sys.argv[1]); m.score(['hi']); "
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in {'sklearn', 'skl2onnx', 'onnx', 'training'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(DEFAULT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
