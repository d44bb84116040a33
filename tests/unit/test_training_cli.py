"""The retraining CLI end to end on a small sample of the real outcome data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from classifier import load_model
from tests.support.data import MMLU_PRO
from training import fit as fit_module
from training.classify_cmd import classify
from training.cli import main
from training.data import load_pair, parse_pair, split_masks

pytestmark = pytest.mark.usefixtures("routing_data")


@pytest.fixture(scope="module")
def fitted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert main(["train", "fit", "--data", str(MMLU_PRO), "--out", str(out), "--sample", "300", "--quiet"]) == 0
    return out


def test_fit_writes_a_loadable_model_with_metrics(fitted_dir: Path) -> None:
    model = load_model(fitted_dir)
    assert model.pair == ("Mistral-7B-Instruct-v0.2", "Meta-Llama-3_1-70B-Instruct")
    test = model.card["metrics"]["test"]
    assert {"roc_auc", "apgr", "cpt50", "cpt80", "cpt95", "cost_at_95", "random", "oracle"} <= set(test)
    assert model.card["split"]["by"] == "prompt_id"


def test_evaluate_writes_json_and_png(fitted_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "evaluate", "--model", str(fitted_dir), "--data", str(MMLU_PRO), "--out", str(tmp_path)]
    assert main([*args, "--price", "small=0.1,0.1"]) == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["prices_usd_per_million_tokens"]["small"] == {"input": 0.1, "output": 0.1}
    assert (tmp_path / "quality_curve.png").stat().st_size > 1000
    assert "APGR" in capsys.readouterr().out


def test_calibrate_sets_the_default_threshold(fitted_dir: Path) -> None:
    before = load_model(fitted_dir)
    target = "large-share=0.3"
    args = ["train", "calibrate", "--router-only", "--model", str(fitted_dir), "--data", str(MMLU_PRO)]
    assert main([*args, "--target", target]) == 0
    after = load_model(fitted_dir)
    assert after.version == before.version
    assert after.card["default_target"] == {"large_share": 0.3}
    assert after.default_threshold == after.threshold_for(large_share=0.3)


def test_classify_keeps_order(fitted_dir: Path) -> None:
    model = load_model(fitted_dir)
    prompts = [f"question {i} " + "why? " * i for i in range(7)]
    stdin = io.StringIO("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    stdout = io.StringIO()
    assert classify(model=model, stdin=stdin, stdout=stdout, batch_size=3) == 0
    scores = [json.loads(line)["score"] for line in stdout.getvalue().splitlines()]
    np.testing.assert_allclose(scores, model.score(prompts), atol=1e-7)


def test_fit_fails_when_onnx_disagrees(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    original = fit_module.Fitted.score
    monkeypatch.setattr(fit_module.Fitted, "score", lambda self, texts: original(self, texts) + 1e-3)
    with pytest.raises(fit_module.ParityError):
        main(["train", "fit", "--data", str(MMLU_PRO), "--out", str(tmp_path / "m"), "--sample", "200", "--quiet"])
    assert not (tmp_path / "m" / "router.onnx").exists()


def test_split_is_by_prompt_and_seeded() -> None:
    data = load_pair(MMLU_PRO, small="Mistral-7B-Instruct-v0.2", large="Meta-Llama-3_1-70B-Instruct")
    assert data.frame["prompt_id"].is_unique
    a, b = split_masks(data, seed=1), split_masks(data, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], split_masks(data, seed=2)["test"])
    assert sum(int(m.sum()) for m in a.values()) == len(data)


def test_parse_pair() -> None:
    assert parse_pair("data/x.parquet=a,b") == ("x", "a", "b")
    with pytest.raises(ValueError):
        parse_pair("x=a")
