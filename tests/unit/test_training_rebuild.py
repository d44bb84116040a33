"""CI check: the committed default model's rebuild command still works (on a small sample)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from classifier import load_model

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "classifier" / "models" / "default" / "model_card.json"


def _command(out: Path) -> list[str]:
    argv = shlex.split(json.loads(CARD.read_text())["rebuild_command"])
    assert argv[:3] == ["cascade", "train", "fit"], argv
    argv[argv.index("--out") + 1] = str(out)
    return [sys.executable, "-m", "training.cli", *argv[1:], "--sample", "300", "--quiet"]


def test_rebuild_command_runs_on_a_sample(tmp_path: Path, routing_data: Path) -> None:
    command = _command(tmp_path / "model")
    data = [Path(REPO, command[i + 1]) for i, arg in enumerate(command) if arg == "--data"]
    assert all(p.exists() for p in data), f"the rebuild command reads data that is not there: {data}"
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = load_model(tmp_path / "model")
    committed = load_model(CARD.parent)
    assert rebuilt.card["feature_set"] == committed.card["feature_set"]
    assert rebuilt.card["family"] == committed.card["family"]
    assert rebuilt.pair == committed.pair


SCORER_CARD = REPO / "classifier" / "models" / "confidence" / "model_card.json"


def _scorer_command(out: Path) -> list[str]:
    argv = shlex.split(json.loads(SCORER_CARD.read_text())["rebuild_command"])
    assert argv[:3] == ["cascade", "train", "fit-scorer"], argv
    argv[argv.index("--out") + 1] = str(out)
    return [sys.executable, "-m", "training.cli", *argv[1:], "--sample", "300"]


def test_scorer_rebuild_command_runs_on_a_sample(tmp_path: Path, routing_data: Path) -> None:
    from classifier.confidence import Evidence
    from classifier.confidence.scorer import load_scorer

    command = _scorer_command(tmp_path / "scorer")
    data = Path(REPO, command[command.index("--data") + 1])
    assert data.exists(), f"the scorer's rebuild command reads data that is not there: {data}"
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt, committed = load_scorer(tmp_path / "scorer"), load_scorer(SCORER_CARD.parent)
    assert rebuilt.card["feature_names"] == committed.card["feature_names"]
    card = json.loads((tmp_path / "scorer" / "model_card.json").read_text())
    assert card["signal_set"] == json.loads(SCORER_CARD.read_text())["signal_set"]
    assert card["parity_max_abs_diff"] <= 1e-4
    evidence = [Evidence(prompt="2+2?", answer="#### 4", others=["4"]), Evidence(prompt="2+2?", answer="")]
    for model in (rebuilt, committed):
        conf = model.confidence(evidence)
        assert conf.shape == (2,) and ((conf >= 0) & (conf <= 1)).all()
